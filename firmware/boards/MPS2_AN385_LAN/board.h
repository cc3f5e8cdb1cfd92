// mplab board: hardware of QEMU's mps2-an385 that this firmware uses.
#ifndef MICROPY_INCLUDED_MPLAB_BOARD_H
#define MICROPY_INCLUDED_MPLAB_BOARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// CPU and SysTick clock of the AN385 FPGA image (QEMU models it at 25 MHz).
#define MPLAB_CPU_HZ            (25000000)
// The tick only drives time-keeping and lwIP's timers: 100 Hz keeps an idle guest asleep.
#define MPLAB_TICK_HZ           (100)
#define MPLAB_TICK_MS           (1000 / MPLAB_TICK_HZ)
// While the REPL waits for input, or code waits long (select.poll, an idle asyncio loop,
// time.sleep), nothing needs the fast tick: slow it down so that an idle node wakes 10 times
// a second (lwIP's timers are 100 ms or coarser; a nearer deadline gets a one-shot timer).
#define MPLAB_IDLE_TICK_HZ      (10)

// External interrupt lines (QEMU hw/arm/mps2.c).
#define MPLAB_IRQ_UART0_RX      (0)
#define MPLAB_IRQ_TIMER0        (8)
#define MPLAB_IRQ_ETHERNET      (13)
#define MPLAB_NUM_IRQS          (32)

// Exception priorities (lower number = more urgent). lwIP runs at the lowest, in PendSV.
#define MPLAB_PRI_DEVICE        (0x40)
#define MPLAB_PRI_PENDSV        (0xe0)

void mplab_board_init(void);
__attribute__((noreturn)) void mplab_system_reset(void);
void mplab_random_seed(uint32_t seed);
uint32_t mplab_random_u32(void);

// Wall clock (nanoseconds since 1970) and host services (board_host.c).
void mplab_rtc_set_ns(uint64_t epoch_ns);
void mplab_host_init(void);
// One Arm semihosting call (bkpt 0xab): operation, argument block; returns r0.
int mplab_host_call(uint32_t op, const void *args);
// True when QEMU's semihosting console is the serial port's chardev (board_host.c).
extern bool mplab_host_console;
void mplab_host_write0(const char *s);
uint32_t mplab_host_time_s(void);
bool mplab_host_entropy(uint8_t *buf, size_t len);
void mplab_entropy_fill(uint8_t *buf, size_t len);
void mplab_wait_for_event(void);
void mplab_irq_set_handler(unsigned irq, void (*handler)(void), uint8_t priority);
void mplab_pendsv_trigger(void);

// Work for the main loop became available; wakes mplab_wait_for_event.
void mplab_signal_event(void);

// Provided by eth_netif.c: run from PendSV.
void mplab_eth_pendsv(void);
void mplab_eth_tick(uint32_t ticks_ms);

#endif // MICROPY_INCLUDED_MPLAB_BOARD_H
