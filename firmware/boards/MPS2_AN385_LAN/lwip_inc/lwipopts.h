// lwIP configuration for the mplab board: NO_SYS, run from PendSV, sized for a LAN9118 at line rate.
#ifndef MICROPY_INCLUDED_MPLAB_LWIPOPTS_H
#define MICROPY_INCLUDED_MPLAB_LWIPOPTS_H

#include <stdint.h>

// Plenty of RAM on the emulated board: size for throughput, not footprint.
#define MEM_SIZE                        (64 * 1024)
#define TCP_MSS                         (1460)
// QEMU's LAN9118 RX FIFO holds ~10 KiB (2640 words) and drops what does not fit: a window
// larger than that lets the host send bursts that overrun it.
#define TCP_WND                         (6 * TCP_MSS)
#define TCP_SND_BUF                     (16 * TCP_MSS)
#define TCP_SND_QUEUELEN                (4 * TCP_SND_BUF / TCP_MSS)
#define MEMP_NUM_TCP_SEG                (TCP_SND_QUEUELEN + 16)
#define PBUF_POOL_SIZE                  (48)
#define MEMP_NUM_TCP_PCB                (16)
#define MEMP_NUM_TCP_PCB_LISTEN         (8)
#define MEMP_NUM_RAW_PCB                (4)
#define MEMP_NUM_ARP_QUEUE              (16)
#define ARP_TABLE_SIZE                  (32)

// Dual stack, as rp2 and esp32: a link-local address at once, SLAAC addresses from router
// advertisements, MLD for the solicited-node groups. DNS servers come from DHCPv4 only (no
// RDNSS), as with upstream's lwIP defaults, so name lookups keep going to the lab's dnsmasq over IPv4.
#define LWIP_IPV4                       1
#define LWIP_IPV6                       1
#define LWIP_IPV6_AUTOCONFIG            1
#define LWIP_IPV6_MLD                   1
#define LWIP_IPV6_SEND_ROUTER_SOLICIT   1
#define LWIP_IPV6_NUM_ADDRESSES         3
#define MEMP_NUM_ND6_QUEUE              (16)
#define LWIP_ND6_NUM_NEIGHBORS          (32)
#define LWIP_ICMP                       1
#define LWIP_NETIF_LINK_CALLBACK        1
#define LWIP_NETIF_STATUS_CALLBACK      1
#define LWIP_NETIF_EXT_STATUS_CALLBACK  1
#define LWIP_DHCP_GET_NTP_SRV           0
#define DNS_MAX_SERVERS                 2
#define LWIP_TCP_KEEPALIVE              1

#define LWIP_RAND() mplab_random_u32()
uint32_t mplab_random_u32(void);

// Common MicroPython lwIP settings (NO_SYS, DHCP, DNS, IGMP, SO_REUSE, ...); MEM_SIZE is set
// above so its small-footprint TCP defaults are skipped.
#include "extmod/lwip-include/lwipopts_common.h"

// The common file allows 5 UDP pcbs (4 + mDNS): a script with a few UDP sockets, or a test
// run that leaves some open, hits ENOMEM at the sixth. Match the TCP pcb count instead.
#undef MEMP_NUM_UDP_PCB
#define MEMP_NUM_UDP_PCB                (16 + LWIP_MDNS_RESPONDER)

#endif // MICROPY_INCLUDED_MPLAB_LWIPOPTS_H
