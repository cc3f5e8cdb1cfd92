/*
 * mplab-netem: tc netem's delay/jitter/loss/corrupt/reorder/rate/limit, in userspace, for
 * kernels without sch_netem (docs/impairments.md, "The userspace engine").
 *
 *   mplab-netem QUEUE CONFIG
 *
 * Takes the packets that the iptables-nft rule `-j NFQUEUE --queue-num QUEUE --queue-bypass`
 * hands it (the node container's bridged IPv4/IPv6 traffic of one direction), decides per
 * packet as sch_netem's netem_enqueue() does, and gives each packet its verdict at its
 * time_to_send. Timing: a binary heap of held packets (netem's tfifo) against
 * CLOCK_MONOTONIC, and one ppoll() whose timeout is the head's due time: ppoll takes a
 * timespec (ns), where epoll_wait's millisecond timeout rounds up and biased releases by about
 * 0.5 ms on this kernel. No sleep per packet: a burst is read and queued at once, and every
 * packet due is released in the same wakeup, so the schedule holds under load.
 *
 * CONFIG holds "key value" lines (lab/impair/userspace.py writes it): delay_ns jitter_ns
 * delay_corr dist loss loss_corr ge_p ge_r ge_h ge_k corrupt corrupt_corr reorder
 * reorder_corr gap rate_bps limit. Probabilities are 0..1. SIGHUP re-reads it and keeps the
 * held packets and their times (like `tc qdisc change`). SIGTERM exits; the kernel then drops
 * what was still held, as deleting a netem qdisc does.
 *
 * Randomness and correlation follow sch_netem: get_crandom(), tabledist() over the same
 * distribution tables tc loads (/usr/lib/tc/<dist>.dist), and the Gilbert-Elliott loss
 * model's state machine.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DIST_SCALE 8192
#define DIST_MAX 16384

struct crnd {
	uint32_t last, rho;
};

struct conf {
	int64_t delay, jitter; /* ns */
	struct crnd delay_cor, loss_cor, corrupt_cor, reorder_cor;
	uint32_t loss, corrupt, reorder; /* probability * 2^32-1, as netem stores them */
	int ge;                          /* Gilbert-Elliott loss model instead of random */
	uint32_t ge_p, ge_r, ge_h, ge_k;
	uint32_t gap, limit;
	uint64_t rate; /* bytes per second, 0 = none */
	int16_t *dist;
	uint32_t dist_size;
	char dist_name[64];
};

struct held {
	int64_t due;
	uint64_t seq; /* FIFO among equal times, like tfifo */
	uint32_t id, len;
	unsigned char *data; /* only when corrupted: the verdict carries the new payload */
};

static struct conf C;
static struct held *heap;
static size_t nheld, cap;
static uint64_t seqno;
static int64_t last_due; /* the tail's time_to_send, netem's reference for rate */
static uint32_t counter; /* netem's reorder counter */
static int ge_bad;
static struct nfq_q_handle *qh;
static const char *conf_path;
static volatile sig_atomic_t got_hup, got_term;
static uint64_t rng_s[4];

/* xoshiro256** seeded from getrandom(): fast and good enough for netem's decisions */
static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint32_t rnd32(void)
{
	uint64_t r = rotl(rng_s[1] * 5, 7) * 9, t = rng_s[1] << 17;
	rng_s[2] ^= rng_s[0];
	rng_s[3] ^= rng_s[1];
	rng_s[1] ^= rng_s[2];
	rng_s[0] ^= rng_s[3];
	rng_s[2] ^= t;
	rng_s[3] = rotl(rng_s[3], 45);
	return (uint32_t)(r >> 32);
}

/* sch_netem.c get_crandom(): the next value depends rho/2^32 on the last one */
static uint32_t crandom(struct crnd *s)
{
	uint64_t value, rho;
	if (s->rho == 0)
		return rnd32();
	value = rnd32();
	rho = (uint64_t)s->rho + 1;
	s->last = (uint32_t)((value * ((1ull << 32) - rho) + (uint64_t)s->last * rho) >> 32);
	return s->last;
}

/* sch_netem.c tabledist(): mu + sigma * table[rnd] / DIST_SCALE, or uniform without a table */
static int64_t tabledist(int64_t mu, int64_t sigma, struct crnd *s)
{
	int64_t x, t;
	uint32_t rnd;
	if (sigma == 0)
		return mu;
	rnd = crandom(s);
	if (C.dist == NULL)
		return (int64_t)(rnd % (2 * (uint64_t)sigma)) + mu - sigma;
	t = C.dist[rnd % C.dist_size];
	x = (sigma % DIST_SCALE) * t;
	x += x >= 0 ? DIST_SCALE / 2 : -DIST_SCALE / 2;
	return x / DIST_SCALE + (sigma / DIST_SCALE) * t + mu;
}

/* sch_netem.c loss_gilb_ell(): p good->bad, r bad->good, loss 1-h in bad, 1-k in good */
static int ge_loss(void)
{
	if (!ge_bad) {
		if (rnd32() < C.ge_p)
			ge_bad = 1;
		return rnd32() < C.ge_k;
	}
	if (rnd32() < C.ge_r)
		ge_bad = 0;
	return rnd32() > C.ge_h;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the heap of held packets ---- */
static int before(const struct held *a, const struct held *b)
{
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void push(struct held h)
{
	size_t i = nheld++;
	if (nheld > cap) {
		cap = cap ? cap * 2 : 1024;
		heap = realloc(heap, cap * sizeof *heap);
		if (!heap) {
			perror("mplab-netem: realloc");
			exit(1);
		}
	}
	while (i > 0 && before(&h, &heap[(i - 1) / 2])) {
		heap[i] = heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	heap[i] = h;
}

static struct held pop(void)
{
	struct held top = heap[0], last = heap[--nheld];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= nheld)
			break;
		if (c + 1 < nheld && before(&heap[c + 1], &heap[c]))
			c++;
		if (!before(&heap[c], &last))
			break;
		heap[i] = heap[c];
		i = c;
	}
	if (nheld)
		heap[i] = last;
	return top;
}

static void verdict(uint32_t id, uint32_t verd, uint32_t len, unsigned char *data)
{
	if (nfq_set_verdict(qh, id, verd, data ? len : 0, data) < 0 && errno != ENOENT)
		perror("mplab-netem: verdict");
	free(data);
}

static void release_due(void)
{
	int64_t t = now_ns();
	while (nheld && heap[0].due <= t) {
		struct held h = pop();
		verdict(h.id, NF_ACCEPT, h.len, h.data);
	}
}

/* ---- configuration ---- */
static uint32_t prob(double p)
{
	if (p <= 0)
		return 0;
	if (p >= 1)
		return UINT32_MAX;
	return (uint32_t)(p * UINT32_MAX);
}

/* where tc's distribution tables live: TC_LIB_DIR as tc honours it, else Debian's and others' */
static const char *const DIST_DIRS[] = {"/usr/lib/tc", "/usr/lib/x86_64-linux-gnu/tc", "/usr/lib/aarch64-linux-gnu/tc",
					 "/usr/lib64/tc", "/usr/local/lib/tc", NULL};

static FILE *open_dist(const char *name)
{
	char path[256];
	const char *env = getenv("TC_LIB_DIR");
	FILE *f;
	if (env) {
		snprintf(path, sizeof path, "%s/%s.dist", env, name);
		if ((f = fopen(path, "r")))
			return f;
	}
	for (int i = 0; DIST_DIRS[i]; i++) {
		snprintf(path, sizeof path, "%s/%s.dist", DIST_DIRS[i], name);
		if ((f = fopen(path, "r")))
			return f;
	}
	return NULL;
}

/* the table of distribution `name` into *out (NULL for uniform); -1 if it cannot be read */
static int load_dist(const char *name, int16_t **out, uint32_t *size)
{
	char line[512];
	FILE *f;
	int16_t *t;
	uint32_t n = 0;
	*out = NULL;
	*size = 0;
	if (!name[0] || !strcmp(name, "uniform"))
		return 0;
	if (!(f = open_dist(name))) {
		fprintf(stderr, "mplab-netem: no distribution table %s.dist\n", name);
		return -1;
	}
	t = calloc(DIST_MAX, sizeof *t);
	while (t && fgets(line, sizeof line, f) && n < DIST_MAX) {
		char *p = line, *end;
		if (line[0] == '#')
			continue;
		for (;;) {
			long v = strtol(p, &end, 0);
			if (end == p || n >= DIST_MAX)
				break;
			t[n++] = (int16_t)v;
			p = end;
		}
	}
	fclose(f);
	if (!n) {
		free(t);
		return -1;
	}
	*out = t;
	*size = n;
	return 0;
}

/* read conf_path into C; on any error C stays as it was (a bad reload changes nothing) */
static int load_conf(void)
{
	char line[256], key[64], dist[64] = "";
	double v;
	FILE *f = fopen(conf_path, "r");
	struct conf n = {0};
	if (!f) {
		perror(conf_path);
		return -1;
	}
	n.limit = 1000;
	n.ge_r = UINT32_MAX;
	while (fgets(line, sizeof line, f)) {
		char sval[64];
		if (sscanf(line, "%63s %63s", key, sval) != 2)
			continue;
		if (!strcmp(key, "dist")) {
			snprintf(dist, sizeof dist, "%s", sval);
			continue;
		}
		v = strtod(sval, NULL);
		if (!strcmp(key, "delay_ns")) n.delay = (int64_t)v;
		else if (!strcmp(key, "jitter_ns")) n.jitter = (int64_t)v;
		else if (!strcmp(key, "delay_corr")) n.delay_cor.rho = prob(v);
		else if (!strcmp(key, "loss")) n.loss = prob(v);
		else if (!strcmp(key, "loss_corr")) n.loss_cor.rho = prob(v);
		else if (!strcmp(key, "ge_p")) { n.ge = 1; n.ge_p = prob(v); }
		else if (!strcmp(key, "ge_r")) n.ge_r = prob(v);
		else if (!strcmp(key, "ge_h")) n.ge_h = prob(v);
		else if (!strcmp(key, "ge_k")) n.ge_k = prob(v);
		else if (!strcmp(key, "corrupt")) n.corrupt = prob(v);
		else if (!strcmp(key, "corrupt_corr")) n.corrupt_cor.rho = prob(v);
		else if (!strcmp(key, "reorder")) n.reorder = prob(v);
		else if (!strcmp(key, "reorder_corr")) n.reorder_cor.rho = prob(v);
		else if (!strcmp(key, "gap")) n.gap = (uint32_t)v;
		else if (!strcmp(key, "rate_bps")) n.rate = (uint64_t)(v / 8);
		else if (!strcmp(key, "limit")) n.limit = (uint32_t)v;
		else fprintf(stderr, "mplab-netem: unknown key %s\n", key);
	}
	fclose(f);
	if (n.reorder && n.gap == 0)
		n.gap = 1; /* what tc does: reorder without gap means gap 1 */
	snprintf(n.dist_name, sizeof n.dist_name, "%s", dist);
	if (strcmp(dist, C.dist_name) || !C.dist_name[0]) {
		if (load_dist(dist, &n.dist, &n.dist_size) < 0)
			return -1;
		free(C.dist);
	} else {
		n.dist = C.dist;
		n.dist_size = C.dist_size;
	}
	/* keep the correlation state across a reload, as `tc qdisc change` would not reset it */
	n.delay_cor.last = C.delay_cor.last;
	n.loss_cor.last = C.loss_cor.last;
	n.corrupt_cor.last = C.corrupt_cor.last;
	n.reorder_cor.last = C.reorder_cor.last;
	C = n;
	return 0;
}

/* The packet's length from its IP header: without corrupt only COPY_HEAD bytes are copied to
 * us (the verdict leaves the packet itself whole), and rate needs the real length. */
#define COPY_HEAD 128
static int ip_len(const unsigned char *p, int caplen)
{
	if (caplen >= 20 && (p[0] >> 4) == 4)
		return (p[2] << 8) | p[3];
	if (caplen >= 40 && (p[0] >> 4) == 6)
		return 40 + ((p[4] << 8) | p[5]);
	return caplen;
}

/* copy whole packets only while corrupting: the copy is most of the engine's cost */
static void set_copy(void)
{
	static int whole = -1;
	int want = C.corrupt != 0;
	if (qh && want != whole && nfq_set_mode(qh, NFQNL_COPY_PACKET, want ? 0xffff : COPY_HEAD) == 0)
		whole = want;
}

/* ---- one packet: sch_netem.c netem_enqueue(), minus duplicate (nft does it: see docs) ---- */
static int on_packet(struct nfq_q_handle *q, struct nfgenmsg *m, struct nfq_data *nfa, void *u)
{
	struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
	unsigned char *payload = NULL, *data = NULL;
	int len = nfq_get_payload(nfa, &payload), caplen;
	uint32_t id;
	int64_t delay = 0, t;
	(void)q, (void)m, (void)u;
	if (!ph)
		return 0;
	id = ntohl(ph->packet_id);
	if (len < 0)
		len = 0;
	caplen = len;
	len = ip_len(payload, len);

	if (C.ge ? ge_loss() : (C.loss && C.loss >= crandom(&C.loss_cor))) {
		verdict(id, NF_DROP, 0, NULL);
		return 0;
	}
	if (nheld >= C.limit) { /* netem: the tfifo is full, drop */
		verdict(id, NF_DROP, 0, NULL);
		return 0;
	}
	if (C.corrupt && caplen >= len && len > 0 && C.corrupt >= crandom(&C.corrupt_cor)) {
		/* netem flips one random bit of the linear data */
		data = malloc(len);
		memcpy(data, payload, len);
		data[rnd32() % (uint32_t)len] ^= (unsigned char)(1u << (rnd32() % 8));
	}
	t = now_ns();
	if (C.gap == 0 || counter < C.gap - 1 || C.reorder < crandom(&C.reorder_cor)) {
		delay = tabledist(C.delay, C.jitter, &C.delay_cor);
		if (C.rate) {
			if (nheld && last_due > t) {
				/* the tail is the reference point: its remaining time comes off our delay */
				delay -= last_due - t;
				if (delay < 0)
					delay = 0;
				t = last_due;
			}
			/* netem counts qdisc_pkt_len(), the frame with its 14-byte Ethernet header;
			 * the queue hands us the IP packet */
			delay += (int64_t)((uint64_t)(len + 14) * 1000000000ull / C.rate);
		}
		counter++;
	} else {
		counter = 0; /* reorder: this one goes now, ahead of the held ones */
	}
	t += delay < 0 ? 0 : delay;
	if (nheld == 0 && t <= now_ns()) {
		verdict(id, NF_ACCEPT, (uint32_t)len, data);
		return 0;
	}
	if (t > last_due || nheld == 0)
		last_due = t;
	push((struct held){t, seqno++, id, (uint32_t)len, data});
	return 0;
}

static void on_signal(int s)
{
	if (s == SIGHUP)
		got_hup = 1;
	else
		got_term = 1;
}

int main(int argc, char **argv)
{
	struct nfq_handle *h;
	int fd, one = 1;
	static char buf[0x10000 + 4096] __attribute__((aligned));
	sigset_t block, waitmask;
	struct sigaction sa = {0};

	if (argc != 3) {
		fprintf(stderr, "usage: mplab-netem QUEUE CONFIG\n");
		return 2;
	}
	conf_path = argv[2];
	if (getrandom(rng_s, sizeof rng_s, 0) != sizeof rng_s)
		return 1;
	if (load_conf() < 0)
		return 1;
	/* the kernel's default slack (50 us) would be added to every timed release */
	prctl(PR_SET_TIMERSLACK, 1UL);
	/* A CFS task on a loaded host wakes up milliseconds late; SCHED_FIFO does not. Inside a
	 * container this usually fails (no CAP_SYS_NICE, no RT budget in the container's cgroup):
	 * the lab then sets it from the host (lab/impair/userspace.py, realtime()). */
	{
		struct sched_param sp = {.sched_priority = 20};
		sched_setscheduler(0, SCHED_FIFO, &sp);
	}

	if (!(h = nfq_open())) {
		perror("mplab-netem: nfq_open");
		return 1;
	}
	if (!(qh = nfq_create_queue(h, (uint16_t)atoi(argv[1]), on_packet, NULL))) {
		perror("mplab-netem: nfq_create_queue");
		return 1;
	}
	if (nfq_set_mode(qh, NFQNL_COPY_PACKET, 0xffff) < 0 || nfq_set_queue_maxlen(qh, 65536) < 0) {
		perror("mplab-netem: nfq_set_mode");
		return 1;
	}
	set_copy();
	fd = nfq_fd(h);
	nfnl_rcvbufsiz(nfq_nfnlh(h), 16 << 20);
	/* a burst larger than the socket buffer loses packets, not the engine */
	setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);

	sa.sa_handler = on_signal;
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGHUP);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	printf("ready\n");
	fflush(stdout);

	while (!got_term) {
		struct pollfd pfd = {fd, POLLIN, 0};
		struct timespec ts, *tp = NULL;
		int n;
		if (got_hup) {
			got_hup = 0;
			if (load_conf() < 0)
				fprintf(stderr, "mplab-netem: reload failed, keeping going\n");
			set_copy();
		}
		if (nheld) {
			int64_t wait = heap[0].due - now_ns();
			if (wait < 0)
				wait = 0;
			ts.tv_sec = wait / 1000000000;
			ts.tv_nsec = wait % 1000000000;
			tp = &ts;
		}
		n = ppoll(&pfd, 1, tp, &waitmask); /* signals are only taken here: no race */
		if (n > 0) {
			/* everything queued now, so a burst costs one wakeup */
			for (int i = 0; i < 256; i++) {
				ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
				if (r <= 0)
					break;
				nfq_handle_packet(h, buf, (int)r);
			}
		}
		release_due();
	}
	nfq_destroy_queue(qh);
	nfq_close(h);
	return 0;
}
