// Driver for the SMSC LAN9118 Ethernet controller in 32-bit PIO mode.
// Register map and FIFO formats: SMSC LAN9118 datasheet, sections 5 (registers) and 3.12-3.13
// (TX/RX data formats); behaviour checked against QEMU's model (hw/net/lan9118.c).

#include "lan9118.h"

#define REG(off) (*(volatile uint32_t *)(LAN9118_BASE + (off)))
#define RX_DATA_FIFO    REG(0x00)
#define TX_DATA_FIFO    REG(0x20)
#define RX_STATUS_FIFO  REG(0x40)
#define ID_REV          REG(0x50)
#define IRQ_CFG         REG(0x54)
#define INT_STS         REG(0x58)
#define INT_EN          REG(0x5c)
#define BYTE_TEST       REG(0x64)
#define FIFO_INT        REG(0x68)
#define RX_CFG          REG(0x6c)
#define TX_CFG          REG(0x70)
#define HW_CFG          REG(0x74)
#define RX_FIFO_INF     REG(0x7c)
#define TX_FIFO_INF     REG(0x80)
#define PMT_CTRL        REG(0x84)
#define FREE_RUN        REG(0x9c)
#define RX_DROP         REG(0xa0)
#define MAC_CSR_CMD     REG(0xa4)
#define MAC_CSR_DATA    REG(0xa8)
#define AFC_CFG         REG(0xac)

#define BYTE_TEST_VALUE     (0x87654321)
#define HW_CFG_SRST         (1u << 0)
#define PMT_CTRL_READY      (1u << 0)
#define IRQ_CFG_EN          (1u << 8)
#define IRQ_CFG_POL_HIGH    (1u << 4)
#define IRQ_CFG_PUSH_PULL   (1u << 0)
#define TX_CFG_TX_ON        (1u << 1)
#define TX_CFG_TXSAO        (1u << 2)   // TX status may overrun: we don't read TX status

#define INT_PHY             (1u << 18)
#define INT_RXDF            (1u << 6)   // RX dropped frame: RX FIFO overrun
#define INT_RSFL            (1u << 3)   // RX status FIFO above FIFO_INT level
#define INT_ENABLED         (INT_PHY | INT_RXDF | INT_RSFL)

#define RX_STS_LEN(s)       (((s) >> 16) & 0x3fff)
#define RX_STS_ERROR        (1u << 15)

#define TX_CMD_A_FIRST      (1u << 13)
#define TX_CMD_A_LAST       (1u << 12)

// MAC control and status registers, reached through MAC_CSR_CMD/DATA.
#define MAC_CSR_BUSY        (1u << 31)
#define MAC_CSR_READ        (1u << 30)
#define MAC_CR              (1)
#define MAC_ADDRH           (2)
#define MAC_ADDRL           (3)
#define MAC_MII_ACC         (6)
#define MAC_MII_DATA        (7)
#define MAC_CR_FDPX         (1u << 20)
#define MAC_CR_MCPAS        (1u << 19)  // pass all multicast: lwIP's IGMP filters in software
#define MAC_CR_TXEN         (1u << 3)
#define MAC_CR_RXEN         (1u << 2)

// Internal PHY (address 1) registers.
#define PHY_ADDR            (1)
#define PHY_BSR             (1)
#define PHY_BSR_LINK_UP     (1u << 2)
#define PHY_INT_SRC         (29)
#define PHY_INT_MASK        (30)
#define PHY_INT_LINK_EVENTS (0x80 | 0x40 | 0x10)  // energy on, autoneg complete, link down

// Hardware registers answer in a few cycles; these bounds only guard against a dead device.
#define SPIN_LIMIT          (100000)

lan9118_stats_t lan9118_stats;

static bool mac_csr_wait(void) {
    for (int i = 0; i < SPIN_LIMIT; ++i) {
        if (!(MAC_CSR_CMD & MAC_CSR_BUSY)) {
            return true;
        }
    }
    return false;
}

static uint32_t mac_csr_read(uint32_t reg) {
    MAC_CSR_CMD = MAC_CSR_BUSY | MAC_CSR_READ | reg;
    mac_csr_wait();
    return MAC_CSR_DATA;
}

static void mac_csr_write(uint32_t reg, uint32_t value) {
    MAC_CSR_DATA = value;
    MAC_CSR_CMD = MAC_CSR_BUSY | reg;
    mac_csr_wait();
}

static uint32_t phy_read(uint32_t reg) {
    mac_csr_write(MAC_MII_ACC, (PHY_ADDR << 11) | (reg << 6) | 1);
    return mac_csr_read(MAC_MII_DATA) & 0xffff;
}

static void phy_write(uint32_t reg, uint32_t value) {
    mac_csr_write(MAC_MII_DATA, value);
    mac_csr_write(MAC_MII_ACC, (PHY_ADDR << 11) | (reg << 6) | 2 | 1);
}

bool lan9118_init(uint8_t mac_out[6]) {
    if (BYTE_TEST != BYTE_TEST_VALUE) {
        return false;
    }
    HW_CFG = HW_CFG_SRST;
    int spins = 0;
    while (HW_CFG & HW_CFG_SRST) {
        if (++spins > SPIN_LIMIT) {
            return false;
        }
    }
    for (spins = 0; !(PMT_CTRL & PMT_CTRL_READY); ) {
        if (++spins > SPIN_LIMIT) {
            return false;
        }
    }

    // The MAC comes from the EEPROM, which QEMU fills from -nic ...,mac=.
    uint32_t lo = mac_csr_read(MAC_ADDRL);
    uint32_t hi = mac_csr_read(MAC_ADDRH);
    mac_out[0] = lo;
    mac_out[1] = lo >> 8;
    mac_out[2] = lo >> 16;
    mac_out[3] = lo >> 24;
    mac_out[4] = hi;
    mac_out[5] = hi >> 8;

    INT_EN = 0;
    INT_STS = 0xffffffff;
    AFC_CFG = 0x006e3740;       // flow-control thresholds recommended by the datasheet
    FIFO_INT = 0;               // interrupt as soon as one RX status is waiting
    RX_CFG = 0;                 // no data offset, 4-byte end alignment
    TX_CFG = TX_CFG_TX_ON | TX_CFG_TXSAO;
    // Reset leaves the MAC promiscuous; take only our unicast, broadcast and multicast.
    mac_csr_write(MAC_CR, MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX | MAC_CR_MCPAS);
    phy_write(PHY_INT_MASK, PHY_INT_LINK_EVENTS);
    (void)phy_read(PHY_INT_SRC);
    IRQ_CFG = IRQ_CFG_EN | IRQ_CFG_POL_HIGH | IRQ_CFG_PUSH_PULL;
    return true;
}

uint32_t lan9118_free_run(void) {
    return FREE_RUN;
}

void lan9118_enable_irq(void) {
    INT_EN = INT_ENABLED;
}

void lan9118_ack_irq(void) {
    // Masks the level interrupt; the service routine re-enables it when it has drained the FIFOs.
    INT_EN = 0;
}

uint32_t lan9118_take_events(void) {
    uint32_t sts = INT_STS & INT_ENABLED;
    INT_STS = sts;
    // RX_DROP counts the frames lost to a full RX FIFO (and clears on read); RXDF only
    // says that some were.
    lan9118_stats.rx_dropped += RX_DROP;
    if (sts & INT_PHY) {
        // Reading the PHY's interrupt source clears it (and so INT_STS.PHY_INT).
        (void)phy_read(PHY_INT_SRC);
        lan9118_stats.link_changes += 1;
    }
    return sts;
}

bool lan9118_link_is_up(void) {
    return phy_read(PHY_BSR) & PHY_BSR_LINK_UP;
}

unsigned lan9118_rx_pending(void) {
    return (RX_FIFO_INF >> 16) & 0xff;
}

int lan9118_rx_begin(void) {
    uint32_t status = RX_STATUS_FIFO;
    size_t len = RX_STS_LEN(status);
    if ((status & RX_STS_ERROR) || len < 14 + 4 || len > LAN9118_MAX_FRAME + 4) {
        lan9118_rx_discard(len);
        lan9118_stats.rx_errors += 1;
        return -1;
    }
    lan9118_stats.rx_frames += 1;
    return len;
}

void lan9118_rx_read_words(uint32_t *buf, size_t len) {
    for (size_t n = (len + 3) / 4; n; --n) {
        *buf++ = RX_DATA_FIFO;
    }
}

void lan9118_rx_discard(size_t len) {
    // Read the words out rather than using RX_DP_CTRL fast-forward: QEMU's model of the
    // fast-forward does not give the FIFO space back.
    for (size_t n = (len + 3) / 4; n; --n) {
        (void)RX_DATA_FIFO;
    }
}

bool lan9118_tx(const lan9118_seg_t *segs, size_t nsegs, size_t total_len) {
    static uint16_t tag;
    // FIFO bytes needed: two command words per segment plus the data words (with alignment).
    size_t need = 0;
    for (size_t i = 0; i < nsegs; ++i) {
        size_t offset = (uintptr_t)segs[i].data & 3;
        need += 8 + ((offset + segs[i].len + 3) & ~3u);
    }
    int spins = 0;
    while ((TX_FIFO_INF & 0xffff) < need) {
        if (spins++ == 0) {
            lan9118_stats.tx_busy += 1;
        }
        if (spins > SPIN_LIMIT) {
            lan9118_stats.tx_dropped += 1;
            return false;
        }
    }
    tag += 1;
    for (size_t i = 0; i < nsegs; ++i) {
        uintptr_t addr = (uintptr_t)segs[i].data;
        size_t offset = addr & 3;
        uint32_t cmd_a = (offset << 16) | segs[i].len;
        if (i == 0) {
            cmd_a |= TX_CMD_A_FIRST;
        }
        if (i == nsegs - 1) {
            cmd_a |= TX_CMD_A_LAST;
        }
        TX_DATA_FIFO = cmd_a;
        TX_DATA_FIFO = ((uint32_t)tag << 16) | total_len;
        // Whole aligned words: the controller skips `offset` leading bytes and the tail.
        const uint32_t *word = (const uint32_t *)(addr & ~3u);
        for (size_t n = (offset + segs[i].len + 3) / 4; n; --n) {
            TX_DATA_FIFO = *word++;
        }
    }
    lan9118_stats.tx_frames += 1;
    return true;
}
