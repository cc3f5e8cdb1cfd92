// lwIP network interface on the LAN9118.
#ifndef MICROPY_INCLUDED_MPLAB_ETH_NETIF_H
#define MICROPY_INCLUDED_MPLAB_ETH_NETIF_H

#include <stdbool.h>
#include "lwip/netif.h"

// Link status codes returned by network.LAN().status().
#define MPLAB_LINK_DOWN     (0)
#define MPLAB_LINK_NOIP     (1)
#define MPLAB_LINK_UP       (3)

void mplab_lwip_init(void);
// Bring up the controller and add the netif (idempotent). False if there is no controller.
bool mplab_eth_init(void);
struct netif *mplab_eth_netif(void);
// Interface up/down; up starts DHCP unless a static address was set.
void mplab_eth_set_active(bool active);
bool mplab_eth_is_active(void);
int mplab_eth_link_status(void);

#endif // MICROPY_INCLUDED_MPLAB_ETH_NETIF_H
