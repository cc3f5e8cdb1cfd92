// Host services of the mplab board: the wall clock, an entropy source and fast console output.
//
// The AN385 has neither an RTC nor a TRNG. QEMU runs this board with -semihosting, so the
// board asks its host (the node container) through Arm semihosting, as it would ask a device:
//  - SYS_TIME gives the host's wall clock in seconds, read at every boot (cold or reset);
//  - SYS_READ of the host's /dev/urandom gives fresh entropy, distinct for every node and boot.
//  - SYS_WRITE0 hands a whole string to QEMU's semihosting console, when the host says (in the
//    semihosting command line) that this console is the serial port's own chardev (below).
// Reads happen at boot and when TLS or os.urandom asks, never in an interrupt handler.

#include <string.h>

#include "py/mphal.h"
#include "board.h"

#define SYS_OPEN    (0x01)
#define SYS_WRITE0  (0x04)
#define SYS_GET_CMDLINE (0x15)
#define SYS_READ    (0x06)
#define SYS_TIME    (0x11)
#define OPEN_MODE_RB (1)

int mplab_host_call(uint32_t op, const void *args) {
    register uint32_t r0 __asm__ ("r0") = op;
    register const void *r1 __asm__ ("r1") = args;
    __asm volatile ("bkpt 0xab" : "+r" (r0) : "r" (r1) : "memory");
    return (int)r0;
}

static int entropy_handle = -1;

uint32_t mplab_host_time_s(void) {
    return (uint32_t)mplab_host_call(SYS_TIME, NULL);
}

bool mplab_host_entropy(uint8_t *buf, size_t len) {
    if (entropy_handle < 0) {
        static const char path[] = "/dev/urandom";
        uint32_t args[3] = { (uint32_t)path, OPEN_MODE_RB, sizeof(path) - 1 };
        entropy_handle = mplab_host_call(SYS_OPEN, args);
        if (entropy_handle < 0) {
            return false;
        }
    }
    while (len > 0) {
        uint32_t args[3] = { (uint32_t)entropy_handle, (uint32_t)buf, len };
        // SYS_READ returns the number of bytes *not* read.
        int left = mplab_host_call(SYS_READ, args);
        if (left < 0 || (size_t)left >= len) {
            return false;
        }
        buf += len - left;
        len = left;
    }
    return true;
}

void mplab_entropy_fill(uint8_t *buf, size_t len) {
    if (mplab_host_entropy(buf, len)) {
        return;
    }
    // No host source (a QEMU without semihosting file access): the PRNG, seeded from the MAC
    // and timer jitter, which is unpredictable enough for ports and ids but not for keys.
    for (size_t i = 0; i < len; i += 4) {
        uint32_t r = mplab_random_u32();
        memcpy(buf + i, &r, len - i < 4 ? len - i : 4);
    }
}

// The word in the semihosting command line by which the node's QEMU says that the
// semihosting console and UART0 share one chardev (a mux; tap-net/mplab-node). Only then may
// console output take the semihosting path: elsewhere (make run, the netns firmware tests)
// the semihosting console is QEMU's stderr, not the serial port.
#define CONSOLE_MUX_WORD "mplab.console=mux"

bool mplab_host_console = false;

static bool host_cmdline_has(const char *word) {
    static char buf[256];
    uint32_t args[2] = { (uint32_t)buf, sizeof(buf) };
    if (mplab_host_call(SYS_GET_CMDLINE, args) != 0) {
        return false;
    }
    buf[sizeof(buf) - 1] = 0;
    size_t n = strlen(word);
    for (const char *p = buf; *p; ++p) {
        if (strncmp(p, word, n) == 0 && (p[n] == 0 || p[n] == ' ') && (p == buf || p[-1] == ' ')) {
            return true;
        }
    }
    return false;
}

void mplab_host_write0(const char *s) {
    mplab_host_call(SYS_WRITE0, s);
}

void mplab_host_init(void) {
    mplab_host_console = host_cmdline_has(CONSOLE_MUX_WORD);
    // A new handle each boot: a machine.reset() forgets the old one but the host keeps it open.
    entropy_handle = -1;
    mplab_rtc_set_ns((uint64_t)mplab_host_time_s() * 1000000000ULL);
    uint32_t seed;
    mplab_entropy_fill((uint8_t *)&seed, sizeof(seed));
    mplab_random_seed(seed);
}
