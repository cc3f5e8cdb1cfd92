// lwIP glue for the LAN9118: interrupt -> PendSV service loop -> lwIP input and timers.
//
// Concurrency: lwIP runs only in PendSV, the lowest-priority exception. The Ethernet interrupt
// and SysTick only mask the device and pend PendSV. Thread-mode code that calls lwIP masks
// PendSV with BASEPRI (MICROPY_PY_LWIP_ENTER in mpconfigboard.h).

#include <string.h>

#include "py/mphal.h"
#include "py/runtime.h"
#include "extmod/modnetwork.h"
#include "lwip/dhcp.h"
#include "lwip/etharp.h"
#include "lwip/igmp.h"
#include "lwip/ethip6.h"
#include "lwip/timeouts.h"
#include "netif/ethernet.h"

#include "board.h"
#include "eth_netif.h"
#include "lan9118.h"

// Frames handled per PendSV run before yielding, so a flood can't starve the REPL.
#define RX_BUDGET           (32)
// Fallback link poll, in case a PHY interrupt is missed.
#define LINK_POLL_MS        (1000)

static struct netif eth_netif;
static bool eth_ready;
static bool eth_active;
static uint32_t last_link_poll_ms;

static err_t eth_linkoutput(struct netif *netif, struct pbuf *p) {
    lan9118_seg_t segs[16];
    size_t nsegs = 0;
    for (struct pbuf *q = p; q != NULL; q = q->next) {
        if (q->len == 0) {
            continue;
        }
        if (nsegs == MP_ARRAY_SIZE(segs)) {
            // A long chain: flatten it rather than fail.
            struct pbuf *flat = pbuf_clone(PBUF_RAW, PBUF_RAM, p);
            if (flat == NULL) {
                return ERR_MEM;
            }
            err_t err = eth_linkoutput(netif, flat);
            pbuf_free(flat);
            return err;
        }
        segs[nsegs].data = q->payload;
        segs[nsegs].len = q->len;
        nsegs += 1;
    }
    if (nsegs == 0) {
        return ERR_ARG;
    }
    return lan9118_tx(segs, nsegs, p->tot_len) ? ERR_OK : ERR_MEM;
}

static err_t eth_netif_init(struct netif *netif) {
    netif->linkoutput = eth_linkoutput;
    netif->output = etharp_output;
    netif->mtu = 1500;
    netif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET | NETIF_FLAG_IGMP
        | NETIF_FLAG_MLD6;
    #if LWIP_IPV6
    netif->output_ip6 = ethip6_output;
    #endif
    netif->name[0] = 'e';
    netif->name[1] = 'n';
    netif->hostname = mod_network_hostname_data;
    return ERR_OK;
}

static void eth_irq_handler(void) {
    lan9118_ack_irq();
    mplab_pendsv_trigger();
}

static void eth_update_link(void) {
    bool up = lan9118_link_is_up();
    if (up && !netif_is_link_up(&eth_netif)) {
        // lwIP restarts DHCP on link up (LWIP_DHCP_CHECK_LINK_UP).
        netif_set_link_up(&eth_netif);
    } else if (!up && netif_is_link_up(&eth_netif)) {
        netif_set_link_down(&eth_netif);
    }
}

void mplab_eth_pendsv(void) {
    if (!eth_ready) {
        return;
    }
    uint32_t events = lan9118_take_events();
    unsigned budget = RX_BUDGET;
    while (budget && lan9118_rx_pending()) {
        int len = lan9118_rx_begin();
        if (len < 0) {
            continue;
        }
        budget -= 1;
        // One contiguous buffer, read straight from the FIFO in words (the FCS included).
        struct pbuf *p = pbuf_alloc(PBUF_RAW, (len + 3) & ~3, PBUF_RAM);
        if (p == NULL) {
            lan9118_rx_discard(len);
            lan9118_stats.rx_dropped += 1;
            continue;
        }
        lan9118_rx_read_words(p->payload, len);
        pbuf_realloc(p, len - 4);
        if (eth_netif.input(p, &eth_netif) != ERR_OK) {
            pbuf_free(p);
        }
    }
    uint32_t now = mp_hal_ticks_ms();
    if ((events & (1u << 18)) || now - last_link_poll_ms >= LINK_POLL_MS) {
        last_link_poll_ms = now;
        eth_update_link();
    }
    sys_check_timeouts();
    if (lan9118_rx_pending()) {
        // Out of budget: come back after anything more urgent has run.
        mplab_pendsv_trigger();
    }
    lan9118_enable_irq();
    mplab_signal_event();
}

void mplab_eth_tick(uint32_t ticks_ms) {
    (void)ticks_ms;
    if (eth_ready) {
        // lwIP's timers (TCP, ARP, DHCP, DNS) are checked every tick.
        mplab_pendsv_trigger();
    }
}

void mplab_lwip_init(void) {
    // Once per boot, before any socket: sockets work (e.g. bind, select) even with no NIC up.
    lwip_init();
}

bool mplab_eth_init(void) {
    if (eth_ready) {
        return true;
    }
    uint8_t mac[6];
    if (!lan9118_init(mac)) {
        return false;
    }
    mplab_random_seed((mac[2] << 24 | mac[3] << 16 | mac[4] << 8 | mac[5]) ^ lan9118_free_run());

    uint32_t lock = mplab_lwip_lock();
    memcpy(eth_netif.hwaddr, mac, 6);
    eth_netif.hwaddr_len = 6;
    netif_add(&eth_netif, IP4_ADDR_ANY4, IP4_ADDR_ANY4, IP4_ADDR_ANY4, NULL, eth_netif_init, ethernet_input);
    netif_set_default(&eth_netif);
    #if LWIP_IPV6
    // fe80::/64 from the MAC (EUI-64), then SLAAC addresses with the same interface id, so a
    // node's IPv6 addresses follow from its MAC as its IPv4 lease does from DHCP.
    struct netif *netif = &eth_netif; // (lwIP's macro tests its argument for NULL)
    netif_create_ip6_linklocal_address(netif, 1);
    netif_set_ip6_autoconfig_enabled(netif, 1);
    #endif
    eth_ready = true;
    mplab_lwip_unlock(lock);

    mplab_irq_set_handler(MPLAB_IRQ_ETHERNET, eth_irq_handler, MPLAB_PRI_DEVICE);
    lan9118_enable_irq();
    return true;
}

struct netif *mplab_eth_netif(void) {
    return &eth_netif;
}

void mplab_eth_set_active(bool active) {
    uint32_t lock = mplab_lwip_lock();
    if (active && !eth_active) {
        netif_set_up(&eth_netif);
        if (lan9118_link_is_up()) {
            netif_set_link_up(&eth_netif);
        }
        if (ip4_addr_isany_val(*netif_ip4_addr(&eth_netif))) {
            dhcp_start(&eth_netif);
        }
        eth_active = true;
    } else if (!active && eth_active) {
        dhcp_release_and_stop(&eth_netif);
        netif_set_down(&eth_netif);
        netif_set_addr(&eth_netif, IP4_ADDR_ANY4, IP4_ADDR_ANY4, IP4_ADDR_ANY4);
        eth_active = false;
    }
    mplab_lwip_unlock(lock);
}

bool mplab_eth_is_active(void) {
    return eth_active;
}

int mplab_eth_link_status(void) {
    if (!eth_active || !netif_is_link_up(&eth_netif)) {
        return MPLAB_LINK_DOWN;
    }
    if (ip4_addr_isany_val(*netif_ip4_addr(&eth_netif))) {
        return MPLAB_LINK_NOIP;
    }
    return MPLAB_LINK_UP;
}

void mplab_eth_soft_reset(void) {
    // Sockets are closed by their finalisers during gc_sweep_all; the interface and its
    // lease stay up across a soft reset, like a real board's Ethernet.
}
