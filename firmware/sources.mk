# Pinned upstream sources: Debian source packages (signed archive, stable URLs).
# One line per buildable MicroPython version: Debian version, suite, sha256 of the .orig tarball.
# To add a version: append a row, run `make -C firmware MICROPYTHON_VERSION=x.y.z`.

MICROPYTHON_VERSION ?= 1.25.0
MICROPYTHON_VERSIONS := 1.25.0 1.26.1

MP_DEB_1.25.0    := 1.25.0+ds-1
MP_SUITE_1.25.0  := trixie
MP_SHA256_1.25.0 := 7b25be99a502f070b2de81dafc08da7051d992325d6e67daa9045a918fffdbea

MP_DEB_1.26.1    := 1.26.1+ds-1
MP_SUITE_1.26.1  := unstable
MP_SHA256_1.26.1 := f5ad2ec89d3e921f753d448955af98b6005655f84ba26087dde6ba0e8d062f34

LWIP_VERSION     := 2.2.1
LWIP_DEB         := 2.2.1+dfsg1
LWIP_SUITE       := trixie
LWIP_SHA256      := 83729c274c499d3348e9fbbe043a3113f3fa8953e7efddc7c21c7fcbb1f2b7b1

# mbedTLS for ssl/tls (the config upstream's ports use: extmod/mbedtls). Debian ships it as .tar.bz2.
MBEDTLS_VERSION  := 3.6.6
MBEDTLS_DEB      := 3.6.6-0.1~deb13u1
MBEDTLS_SUITE    := trixie
MBEDTLS_SHA256   := 8fb65fae8dcae5840f793c0a334860a411f884cc537ea290ce1c52bb64ca007a
