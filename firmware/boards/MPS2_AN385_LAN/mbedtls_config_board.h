// mbedTLS configuration of the mplab board: upstream's common port configuration
// (extmod/mbedtls), bare metal, with the board's clock for certificate dates.
#ifndef MICROPY_INCLUDED_MPLAB_MBEDTLS_CONFIG_BOARD_H
#define MICROPY_INCLUDED_MPLAB_MBEDTLS_CONFIG_BOARD_H

#define MBEDTLS_ECP_NIST_OPTIM
// PEM as well as DER for certificates and keys, as esp32's build accepts (rp2's takes DER only).
#define MBEDTLS_PEM_PARSE_C
#define MBEDTLS_BASE64_C
// SSLSocket.getpeercert() needs the peer's certificate after the handshake (about 1 KiB each).
#define MBEDTLS_SSL_KEEP_PEER_CERTIFICATE

#include <time.h>
time_t mplab_mbedtls_time(time_t *timer);
#define MBEDTLS_PLATFORM_TIME_MACRO mplab_mbedtls_time
#define MBEDTLS_PLATFORM_MS_TIME_ALT
#define MBEDTLS_PLATFORM_GMTIME_R_ALT

// TLS 1.2 only, as upstream's ports (extmod/mbedtls) and rp2. TLS 1.3 was built and measured
// (MBEDTLS_SSL_PROTO_TLS1_3 on PSA crypto, RSA-PSS): it works against TLS 1.3 servers, but a
// client with 1.2 and 1.3 offers RSA-PSS signatures, which mbedTLS 3.6.6 then rejects in a
// TLS 1.2 ServerKeyExchange (MBEDTLS_ERR_SSL_ILLEGAL_PARAMETER against OpenSSL with an RSA
// certificate). Breaking 1.2 servers to gain 1.3 is not what a real board does: see
// docs/firmware.md.

#define MICROPY_MBEDTLS_CONFIG_BARE_METAL (1)

#include "extmod/mbedtls/mbedtls_config_common.h"

#endif // MICROPY_INCLUDED_MPLAB_MBEDTLS_CONFIG_BOARD_H
