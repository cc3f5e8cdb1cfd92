// mplab board HAL: vector table, SysTick time base, interrupt-driven UART stdio, WFI idle.

#include <string.h>

#include "py/mphal.h"
#include "py/runtime.h"
#include "py/stream.h"
#include "shared/runtime/interrupt_char.h"
#include "shared/runtime/semihosting_arm.h"
#include "board.h"

// ---------------------------------------------------------------------------
// Cortex-M3 system registers.

#define SCB_ICSR        (*(volatile uint32_t *)0xe000ed04)
#define SCB_VTOR        (*(volatile uint32_t *)0xe000ed08)
#define SCB_AIRCR       (*(volatile uint32_t *)0xe000ed0c)
#define SCB_SHPR3       (*(volatile uint32_t *)0xe000ed20)
#define SYST_CSR        (*(volatile uint32_t *)0xe000e010)
#define SYST_RVR        (*(volatile uint32_t *)0xe000e014)
#define SYST_CVR        (*(volatile uint32_t *)0xe000e018)
#define NVIC_ISER       ((volatile uint32_t *)0xe000e100)
#define NVIC_IPR        ((volatile uint8_t *)0xe000e400)

#define ICSR_PENDSVSET  (1u << 28)

// ---------------------------------------------------------------------------
// Vector table in RAM: the port's startup table has only the 16 system exceptions,
// so we copy it and add the external interrupts we use, then point VTOR at it.

#define NUM_VECTORS (16 + MPLAB_NUM_IRQS)
typedef void (*vector_t)(void);
static vector_t vector_table[NUM_VECTORS] __attribute__((aligned(256)));

extern const uint32_t isr_vector[];

static void unhandled_irq(void) {
    // A stray interrupt: ignore it rather than fault; devices we don't use are never enabled.
}

void mplab_irq_set_handler(unsigned irq, void (*handler)(void), uint8_t priority) {
    vector_table[16 + irq] = handler;
    NVIC_IPR[irq] = priority;
    NVIC_ISER[irq / 32] = 1u << (irq % 32);
}

void mplab_pendsv_trigger(void) {
    SCB_ICSR = ICSR_PENDSVSET;
}

static void pendsv_handler(void) {
    mplab_eth_pendsv();
}

// ---------------------------------------------------------------------------
// Time base. Time is read from a free-running counter (CMSDK dual timer 1, 32-bit at the CPU
// clock), extended to 64 bits. Counting SysTick interrupts instead would lose time whenever
// the host runs QEMU late (1.5 % under load, measured), since QEMU restarts a late periodic
// timer from "now". SysTick only wakes the CPU for lwIP's timers and keeps the extension fed.

#define SYSTICK_RELOAD (MPLAB_CPU_HZ / MPLAB_TICK_HZ - 1)

typedef struct {
    volatile uint32_t LOAD;
    volatile uint32_t VALUE;
    volatile uint32_t CTRL;
    volatile uint32_t INTCLR;
} cmsdk_dualtimer_t;

#define CLOCK_TIMER ((cmsdk_dualtimer_t *)0x40002000)
#define DUALTIMER_CTRL_32BIT    (1 << 1)
#define DUALTIMER_CTRL_ENABLE   (1 << 7)

static uint32_t clock_last_raw;
static uint64_t clock_cycles;

// CPU cycles since boot. Must run at least once per wrap (171 s); SysTick sees to that.
static uint64_t clock_read_cycles(void) {
    uint32_t primask;
    __asm volatile ("mrs %0, primask\n cpsid i" : "=r" (primask));
    uint32_t raw = ~CLOCK_TIMER->VALUE; // it counts down from 0xffffffff
    clock_cycles += raw - clock_last_raw;
    clock_last_raw = raw;
    uint64_t cycles = clock_cycles;
    __asm volatile ("msr primask, %0" : : "r" (primask));
    return cycles;
}

static void clock_init(void) {
    CLOCK_TIMER->CTRL = 0;
    CLOCK_TIMER->LOAD = 0xffffffff;
    CLOCK_TIMER->CTRL = DUALTIMER_CTRL_ENABLE | DUALTIMER_CTRL_32BIT; // free-running, no prescale
    clock_last_raw = ~CLOCK_TIMER->VALUE;
}

static void systick_handler(void) {
    uint64_t cycles = clock_read_cycles();
    mplab_eth_tick((uint32_t)(cycles / (MPLAB_CPU_HZ / 1000)));
}

static uint64_t ticks_us64(void) {
    return clock_read_cycles() / (MPLAB_CPU_HZ / 1000000);
}

mp_uint_t mp_hal_ticks_us(void) {
    return (mp_uint_t)ticks_us64();
}

mp_uint_t mp_hal_ticks_ms(void) {
    return (mp_uint_t)(clock_read_cycles() / (MPLAB_CPU_HZ / 1000));
}

mp_uint_t mp_hal_ticks_cpu(void) {
    return (mp_uint_t)clock_read_cycles();
}

// Wall clock: the boot-relative clock plus an offset, set from the host at boot
// (board_host.c) and by machine.RTC().datetime() or NTP afterwards.
static uint64_t rtc_offset_ns;

static uint64_t uptime_ns(void) {
    return clock_read_cycles() * (1000000000ULL / MPLAB_CPU_HZ);
}

uint64_t mp_hal_time_ns(void) {
    return rtc_offset_ns + uptime_ns();
}

void mplab_rtc_set_ns(uint64_t epoch_ns) {
    rtc_offset_ns = epoch_ns - uptime_ns();
}

void mp_hal_delay_us(mp_uint_t us) {
    uint32_t start = mp_hal_ticks_us();
    if (us >= 1000) {
        // Long enough to sleep through ticks; keep servicing events.
        while (mp_hal_ticks_us() - start + MPLAB_TICK_MS * 1000 < us) {
            mp_event_wait_ms(1);
        }
    }
    while (mp_hal_ticks_us() - start < us) {
    }
}

// CMSDK APB timer 0: a one-shot wake-up, so that sleeps end on time between ticks.
typedef struct {
    volatile uint32_t CTRL;
    volatile uint32_t VALUE;
    volatile uint32_t RELOAD;
    volatile uint32_t INTCLEAR;
} cmsdk_timer_t;

#define TIMER0 ((cmsdk_timer_t *)0x40000000)
#define TIMER_CTRL_ENABLE   (1 << 0)
#define TIMER_CTRL_INTEN    (1 << 3)

static void timer0_handler(void) {
    TIMER0->INTCLEAR = 1;
    TIMER0->CTRL = 0;
    mplab_signal_event();
}

static void wake_after_us(uint32_t us) {
    TIMER0->CTRL = 0;
    TIMER0->INTCLEAR = 1;
    TIMER0->RELOAD = 0;
    TIMER0->VALUE = us * (MPLAB_CPU_HZ / 1000000);
    TIMER0->CTRL = TIMER_CTRL_ENABLE | TIMER_CTRL_INTEN;
}

void mp_hal_delay_ms(mp_uint_t ms) {
    // Microsecond arithmetic (exact sleeps) in chunks that can't overflow the 32-bit counter.
    for (; ms > 60000; ms -= 60000) {
        mp_hal_delay_ms(60000);
    }
    uint32_t start = mp_hal_ticks_us();
    uint32_t total = ms * 1000;
    for (;;) {
        uint32_t elapsed = mp_hal_ticks_us() - start;
        if (elapsed >= total) {
            break;
        }
        uint32_t remaining = total - elapsed;
        if (remaining <= MPLAB_TICK_MS * 1000) {
            // Ends before the next tick: a one-shot timer wakes us, not the tick.
            wake_after_us(remaining);
        }
        mp_event_wait_ms(remaining / 1000);
    }
}

// ---------------------------------------------------------------------------
// Sleeping: WFI until an interrupt posted new work. The check of the flag and the WFI run
// with interrupts masked, so an event that lands in between still wakes the WFI.

static volatile bool event_pending;

void mplab_signal_event(void) {
    event_pending = true;
}

void mplab_wait_for_event(void) {
    __asm volatile ("cpsid i" : : : "memory");
    if (!event_pending) {
        __asm volatile ("wfi" : : : "memory");
    }
    event_pending = false;
    __asm volatile ("cpsie i" : : : "memory");
}

static void systick_set_hz(uint32_t hz);

void mplab_wait_for_event_ms(uint32_t timeout_ms) {
    // timeout_ms is (uint32_t)-1 for "no timeout".
    if (timeout_ms <= MPLAB_TICK_MS) {
        // Busy I/O (modlwip polls its sockets in 1 ms waits): the fast tick.
        systick_set_hz(MPLAB_TICK_HZ);
    } else {
        // A long wait: lwIP's timers (100 ms or coarser) are content with the idle tick,
        // and a deadline before the next idle tick gets a one-shot wake-up of its own.
        systick_set_hz(MPLAB_IDLE_TICK_HZ);
        if (timeout_ms < 1000 / MPLAB_IDLE_TICK_HZ) {
            wake_after_us(timeout_ms * 1000);
        }
    }
    mplab_wait_for_event();
}

uint32_t mplab_lwip_lock(void) {
    uint32_t basepri;
    __asm volatile ("mrs %0, basepri" : "=r" (basepri));
    uint32_t pri = MPLAB_PRI_PENDSV;
    __asm volatile ("msr basepri_max, %0" : : "r" (pri) : "memory");
    return basepri;
}

void mplab_lwip_unlock(uint32_t state) {
    __asm volatile ("msr basepri, %0" : : "r" (state) : "memory");
}

// xorshift32, seeded from the host's entropy (board_host.c), the MAC and boot timing: for
// ports, ISNs, DNS ids and the random module. Keys come from mplab_entropy_fill instead.
static uint32_t random_state = 0x6d706c62;

void mplab_random_seed(uint32_t seed) {
    random_state ^= seed;
    if (random_state == 0) {
        random_state = 1;
    }
}

uint32_t mplab_random_u32(void) {
    uint32_t x = random_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    random_state = x;
    return x;
}

// ---------------------------------------------------------------------------
// UART0 (CMSDK APB UART): RX by interrupt into a ring buffer, TX polled (QEMU drains at once),
// or by semihosting when the host allows it (mp_hal_stdout_tx_strn).

typedef struct {
    volatile uint32_t DATA;
    volatile uint32_t STATE;
    volatile uint32_t CTRL;
    volatile uint32_t INTSTATUS;
    volatile uint32_t BAUDDIV;
} cmsdk_uart_t;

#define UART0 ((cmsdk_uart_t *)0x40004000)
#define UART_STATE_TXFULL   (1 << 0)
#define UART_STATE_RXFULL   (1 << 1)
#define UART_CTRL_TX_EN     (1 << 0)
#define UART_CTRL_RX_EN     (1 << 1)
#define UART_CTRL_RX_INTEN  (1 << 3)
#define UART_INT_RX         (1 << 1)

#define STDIN_BUF_SIZE (1024)
static uint8_t stdin_buf[STDIN_BUF_SIZE];
static volatile uint32_t stdin_head, stdin_tail;

static void uart0_rx_handler(void) {
    UART0->INTSTATUS = UART_INT_RX;
    while (UART0->STATE & UART_STATE_RXFULL) {
        int c = UART0->DATA & 0xff;
        if (c == mp_interrupt_char) {
            // Ctrl-C interrupts running Python code, even a blocking socket call. (Input
            // already queued stays: only the reader may move the read index.)
            mp_sched_keyboard_interrupt();
            continue;
        }
        uint32_t next = (stdin_head + 1) % STDIN_BUF_SIZE;
        if (next != stdin_tail) {
            stdin_buf[stdin_head] = c;
            stdin_head = next;
        }
    }
    mplab_signal_event();
}

// The RX handler from thread mode: with interrupts masked, or it races the real interrupt
// over the ring buffer (seen as duplicated and lost characters).
static void uart0_rx_poll(void) {
    uint32_t primask;
    __asm volatile ("mrs %0, primask\n cpsid i" : "=r" (primask) : : "memory");
    uart0_rx_handler();
    __asm volatile ("msr primask, %0" : : "r" (primask) : "memory");
}

// Called by the port's startup code before main, to make early output possible.
void uart_init(void) {
    UART0->BAUDDIV = 16;
    UART0->CTRL = UART_CTRL_TX_EN | UART_CTRL_RX_EN;
}

uintptr_t mp_hal_stdio_poll(uintptr_t poll_flags) {
    uintptr_t ret = 0;
    if ((poll_flags & MP_STREAM_POLL_RD) && stdin_head != stdin_tail) {
        ret |= MP_STREAM_POLL_RD;
    }
    if (poll_flags & MP_STREAM_POLL_WR) {
        ret |= MP_STREAM_POLL_WR;
    }
    return ret;
}

static void systick_set_hz(uint32_t hz) {
    // The new period starts at the next reload. Restarting the count here instead would
    // starve lwIP's timers while execs come less than a period apart.
    uint32_t reload = MPLAB_CPU_HZ / hz - 1;
    if (SYST_RVR != reload) {
        SYST_RVR = reload;
        if (hz == MPLAB_TICK_HZ) {
            mplab_pendsv_trigger(); // catch up with lwIP's timers now, not at the next tick
        }
    }
}

int mp_hal_stdin_rx_chr(void) {
    for (;;) {
        if (stdin_head != stdin_tail) {
            systick_set_hz(MPLAB_TICK_HZ);
            int c = stdin_buf[stdin_tail];
            stdin_tail = (stdin_tail + 1) % STDIN_BUF_SIZE;
            return c;
        }
        if (UART0->STATE & UART_STATE_RXFULL) {
            // Belt and braces: never sleep on a byte the interrupt did not report.
            uart0_rx_poll();
            continue;
        }
        systick_set_hz(MPLAB_IDLE_TICK_HZ);
        mp_event_wait_indefinite();
    }
}

static void uart0_tx_byte(uint8_t c) {
    while (UART0->STATE & UART_STATE_TXFULL) {
    }
    UART0->DATA = c;
}

// Console output. QEMU's CMSDK UART model gives every byte written to DATA to its chardev as
// a write(2) of its own, and one more to the chardev's logfile: over the node's TCP console
// that capped output at ~35-100 KB/s. When the host routes the semihosting console to the
// same chardev (mplab_host_console, board_host.c), a whole run of text goes out as one
// SYS_WRITE0, i.e. one write(2): megabytes per second. SYS_WRITE0 takes NUL-terminated
// strings, so a NUL byte itself still goes through the UART. Both paths write the chardev
// synchronously, so the byte order is kept, once the UART has handed over its last byte.
#define TX_CHUNK (512)

mp_uint_t mp_hal_stdout_tx_strn(const char *str, size_t len) {
    if (!mplab_host_console) {
        for (size_t i = 0; i < len; ++i) {
            uart0_tx_byte((uint8_t)str[i]);
        }
        return len;
    }
    char buf[TX_CHUNK + 1];
    size_t i = 0;
    while (i < len) {
        size_t n = 0;
        while (i < len && n < TX_CHUNK && str[i] != 0) {
            buf[n++] = str[i++];
        }
        if (n > 0) {
            // A byte the UART model still holds (its chardev was busy) must go out first.
            while (UART0->STATE & UART_STATE_TXFULL) {
            }
            buf[n] = 0;
            mplab_host_write0(buf);
        }
        if (i < len && str[i] == 0) {
            uart0_tx_byte(0);
            ++i;
        }
    }
    return len;
}

// ---------------------------------------------------------------------------

void mplab_board_init(void) {
    // System exceptions from the port's table; the rest ignore stray interrupts.
    for (int i = 0; i < NUM_VECTORS; ++i) {
        vector_table[i] = i < 16 ? (vector_t)isr_vector[i] : unhandled_irq;
    }
    vector_table[14] = pendsv_handler;
    vector_table[15] = systick_handler;
    SCB_VTOR = (uint32_t)vector_table;

    // PendSV lowest (bits 23:16 of SHPR3), SysTick with the devices (bits 31:24).
    SCB_SHPR3 = (SCB_SHPR3 & 0x0000ffff) | ((uint32_t)MPLAB_PRI_DEVICE << 24) | ((uint32_t)MPLAB_PRI_PENDSV << 16);

    clock_init();
    mplab_host_init();
    SYST_RVR = SYSTICK_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 7; // processor clock, interrupt, enable

    mplab_irq_set_handler(MPLAB_IRQ_UART0_RX, uart0_rx_handler, MPLAB_PRI_DEVICE);
    UART0->CTRL |= UART_CTRL_RX_INTEN;
    // A byte that arrived while RX interrupts were off raised none, and the UART takes no
    // more input until it is read: drain it now, or the console stays deaf for good.
    uart0_rx_poll();
    mplab_irq_set_handler(MPLAB_IRQ_TIMER0, timer0_handler, MPLAB_PRI_DEVICE);
}

__attribute__((noreturn)) void mplab_system_reset(void) {
    // SYSRESETREQ: QEMU resets the machine and boots the firmware again.
    SCB_AIRCR = (0x5fa << 16) | (1 << 2);
    for (;;) {
    }
}
