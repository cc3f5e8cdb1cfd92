// Driver for the SMSC LAN9118 Ethernet controller (as on the MPS2 AN385 board).
#ifndef MICROPY_INCLUDED_MPLAB_LAN9118_H
#define MICROPY_INCLUDED_MPLAB_LAN9118_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LAN9118_BASE        (0x40200000)
#define LAN9118_MAX_FRAME   (1518)

typedef struct _lan9118_stats_t {
    uint32_t rx_frames;
    uint32_t rx_errors;         // frames with the error summary bit, or of impossible length
    uint32_t rx_dropped;        // the controller ran out of RX FIFO (RXDF), or no buffer for a frame
    uint32_t tx_frames;
    uint32_t tx_busy;           // times a frame had to wait for TX FIFO space
    uint32_t tx_dropped;        // frames given up after the TX FIFO stayed full
    uint32_t link_changes;
} lan9118_stats_t;

extern lan9118_stats_t lan9118_stats;

// Reset and configure the controller; reads the MAC address QEMU loaded (mac=...).
// Returns false if no LAN9118 answers at LAN9118_BASE.
bool lan9118_init(uint8_t mac_out[6]);
void lan9118_enable_irq(void);
void lan9118_ack_irq(void);
// Read and acknowledge the pending interrupt events (INT_PHY etc.); counts drops and link changes.
uint32_t lan9118_take_events(void);
uint32_t lan9118_free_run(void);
bool lan9118_link_is_up(void);

// Number of received frames waiting in the RX status FIFO.
unsigned lan9118_rx_pending(void);
// Length of the next frame including its 4-byte FCS, or -1 if it's bad and was discarded.
int lan9118_rx_begin(void);
// Copy the frame started by lan9118_rx_begin into buf (rounded up to whole words).
void lan9118_rx_read_words(uint32_t *buf, size_t len);
// Discard the frame started by lan9118_rx_begin.
void lan9118_rx_discard(size_t len);

// Transmit a frame given as scattered segments. Returns false if the TX FIFO had no room
// within the timeout (the caller reports ERR_MEM to lwIP: backpressure, not a silent drop).
typedef struct { const void *data; size_t len; } lan9118_seg_t;
bool lan9118_tx(const lan9118_seg_t *segs, size_t nsegs, size_t total_len);

#endif // MICROPY_INCLUDED_MPLAB_LAN9118_H
