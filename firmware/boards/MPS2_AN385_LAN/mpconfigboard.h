// mplab board configuration: included first by ports/qemu/mpconfigport.h (patches/0001).
// Features listed here are also reported in build/manifest.json (lines of the form
// `#define MICROPY_... (1)`), so keep one feature per line.

#define MICROPY_PY_SYS_PLATFORM             "mplab"
#define MICROPY_PY_MACHINE_INCLUDEFILE      "board_machine.c"

// Time: the wall clock from the host (epoch 1970, as rp2 and esp32), and machine.RTC.
#define MICROPY_EPOCH_IS_1970               (1)
#define MICROPY_PY_TIME                     (1)
#define MICROPY_PY_TIME_TIME_TIME_NS        (1)
#define MICROPY_PY_TIME_GMTIME_LOCALTIME_MKTIME (1)
#define MICROPY_PY_TIME_INCLUDEFILE         "board_time.c"
#define MICROPY_PY_MACHINE_EXTRA_GLOBALS \
    { MP_ROM_QSTR(MP_QSTR_RTC), MP_ROM_PTR(&machine_rtc_type) },
extern const struct _mp_obj_type_t machine_rtc_type;
#define MICROPY_PY_SELECT                   (1)
#define MICROPY_PY_OS_UNAME                 (1)
#define MICROPY_PY_OS_INCLUDEFILE           "board_os.c"
#define MICROPY_PY_OS_URANDOM               (1)

// The modules of a networked board (rp2's RPI_PICO_W, esp32): asyncio, TLS, hashes, ciphers.
#define MICROPY_PY_ASYNCIO                  (1)
#define MICROPY_PY_HASHLIB_MD5              (1)
#define MICROPY_PY_HASHLIB_SHA1             (1)
#define MICROPY_PY_HASHLIB_SHA256           (1)
#define MICROPY_PY_CRYPTOLIB                (1)
#define MICROPY_PY_WEBSOCKET                (1)
#define MICROPY_PY_RE_MATCH_GROUPS          (1)
#define MICROPY_PY_RE_MATCH_SPAN_START_END  (1)
#define MICROPY_PY_SOCKET_EXTENDED_STATE    (1)
// mbedTLS allocates from the GC heap, tracked so that the GC keeps its buffers.
#define MICROPY_TRACKED_ALLOC               (1)
#define MICROPY_PY_RANDOM_SEED_INIT_FUNC    (mplab_random_u32())
uint32_t mplab_random_u32(void);
#define MICROPY_ENABLE_FINALISER            (1)
#define MICROPY_ENABLE_SCHEDULER            (1)
#define MICROPY_KBD_EXCEPTION               (1)
#define MICROPY_PY_UCTYPES                  (1)
#define MICROPY_VFS_ROM                     (0)

// Networking: lwIP sockets, network.LAN on the LAN9118.
#define MICROPY_PY_NETWORK                  (1)
#define MICROPY_PY_LWIP_SOCK_RAW            (1)
#define MICROPY_PY_NETWORK_HOSTNAME_DEFAULT "mpy-lan9118"
#define MICROPY_PORT_NETWORK_INTERFACES \
    { MP_ROM_QSTR(MP_QSTR_LAN), MP_ROM_PTR(&network_lan_type) },
extern const struct _mp_obj_type_t network_lan_type;

// lwIP runs in PendSV (lowest priority). Socket code masks PendSV with BASEPRI while it
// touches lwIP state, so lwIP keeps running timers and input while Python computes.
#define MICROPY_PY_LWIP_ENTER   uint32_t atomic_state = mplab_lwip_lock();
#define MICROPY_PY_LWIP_REENTER atomic_state = mplab_lwip_lock();
#define MICROPY_PY_LWIP_EXIT    mplab_lwip_unlock(atomic_state);
uint32_t mplab_lwip_lock(void);
void mplab_lwip_unlock(uint32_t state);

// Waiting: sleep in WFI until an interrupt (UART RX, Ethernet, tick) has new work.
// A wait with a long (or no) timeout also slows the tick to the idle rate, with a one-shot
// timer for the deadline, so an idle asyncio loop or select.poll wakes as rarely as the REPL.
#define MICROPY_INTERNAL_WFE(TIMEOUT_MS) mplab_wait_for_event_ms(TIMEOUT_MS)
void mplab_wait_for_event(void);
void mplab_wait_for_event_ms(uint32_t timeout_ms);

// Soft reset hook. Sockets are closed by their finalisers in gc_sweep_all; the interface and
// its lease deliberately survive, as on a real board.
#define MICROPY_PORT_DEINIT_FUNC mplab_eth_soft_reset()
void mplab_eth_soft_reset(void);
