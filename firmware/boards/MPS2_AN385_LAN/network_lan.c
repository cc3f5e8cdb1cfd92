// network.LAN: the board's Ethernet interface, driven by lwIP on the LAN9118.

#include "py/mperrno.h"
#include "py/runtime.h"
#include "extmod/modnetwork.h"
#include "lwip/netif.h"

#include "eth_netif.h"
#include "lan9118.h"

typedef struct _network_lan_obj_t {
    mp_obj_base_t base;
} network_lan_obj_t;

static const network_lan_obj_t network_lan_eth0 = { { &network_lan_type } };

static void network_lan_print(const mp_print_t *print, mp_obj_t self_in, mp_print_kind_t kind) {
    const ip4_addr_t *ip = netif_ip4_addr(mplab_eth_netif());
    mp_printf(print, "<LAN status=%d ip=%u.%u.%u.%u>", mplab_eth_link_status(),
        ip4_addr1(ip), ip4_addr2(ip), ip4_addr3(ip), ip4_addr4(ip));
}

static mp_obj_t network_lan_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    mp_arg_check_num(n_args, n_kw, 0, 1, false);
    if (n_args == 1 && mp_obj_get_int(args[0]) != 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("invalid LAN interface"));
    }
    if (!mplab_eth_init()) {
        mp_raise_OSError(MP_ENODEV);
    }
    return MP_OBJ_FROM_PTR(&network_lan_eth0);
}

static mp_obj_t network_lan_active(size_t n_args, const mp_obj_t *args) {
    if (n_args == 1) {
        return mp_obj_new_bool(mplab_eth_is_active());
    }
    mplab_eth_set_active(mp_obj_is_true(args[1]));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(network_lan_active_obj, 1, 2, network_lan_active);

static mp_obj_t network_lan_isconnected(mp_obj_t self_in) {
    return mp_obj_new_bool(mplab_eth_link_status() == MPLAB_LINK_UP);
}
static MP_DEFINE_CONST_FUN_OBJ_1(network_lan_isconnected_obj, network_lan_isconnected);

static mp_obj_t network_lan_ifconfig(size_t n_args, const mp_obj_t *args) {
    return mod_network_nic_ifconfig(mplab_eth_netif(), n_args - 1, args + 1);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(network_lan_ifconfig_obj, 1, 2, network_lan_ifconfig);

static mp_obj_t network_lan_ipconfig(size_t n_args, const mp_obj_t *args, mp_map_t *kwargs) {
    return mod_network_nic_ipconfig(mplab_eth_netif(), n_args - 1, args + 1, kwargs);
}
static MP_DEFINE_CONST_FUN_OBJ_KW(network_lan_ipconfig_obj, 1, network_lan_ipconfig);

static mp_obj_t network_lan_status(size_t n_args, const mp_obj_t *args) {
    if (n_args == 1) {
        return MP_OBJ_NEW_SMALL_INT(mplab_eth_link_status());
    }
    if (mp_obj_str_get_qstr(args[1]) == MP_QSTR_stats) {
        // Driver counters, for telling driver drops from LAN drops.
        mp_obj_t items[] = {
            mp_obj_new_int_from_uint(lan9118_stats.rx_frames),
            mp_obj_new_int_from_uint(lan9118_stats.rx_errors),
            mp_obj_new_int_from_uint(lan9118_stats.rx_dropped),
            mp_obj_new_int_from_uint(lan9118_stats.tx_frames),
            mp_obj_new_int_from_uint(lan9118_stats.tx_busy),
            mp_obj_new_int_from_uint(lan9118_stats.tx_dropped),
            mp_obj_new_int_from_uint(lan9118_stats.link_changes),
        };
        return mp_obj_new_tuple(MP_ARRAY_SIZE(items), items);
    }
    mp_raise_ValueError(MP_ERROR_TEXT("unknown status param"));
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(network_lan_status_obj, 1, 2, network_lan_status);

static mp_obj_t network_lan_config(size_t n_args, const mp_obj_t *args, mp_map_t *kwargs) {
    if (kwargs->used != 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("no settable config param"));
    }
    if (n_args != 2) {
        mp_raise_TypeError(MP_ERROR_TEXT("must query one param"));
    }
    switch (mp_obj_str_get_qstr(args[1])) {
        case MP_QSTR_mac:
            return mp_obj_new_bytes(mplab_eth_netif()->hwaddr, 6);
        case MP_QSTR_hostname:
            return mp_obj_new_str_from_cstr(mod_network_hostname_data);
        case MP_QSTR_mtu:
            return MP_OBJ_NEW_SMALL_INT(mplab_eth_netif()->mtu);
        default:
            mp_raise_ValueError(MP_ERROR_TEXT("unknown config param"));
    }
}
static MP_DEFINE_CONST_FUN_OBJ_KW(network_lan_config_obj, 1, network_lan_config);

static const mp_rom_map_elem_t network_lan_locals_dict_table[] = {
    { MP_ROM_QSTR(MP_QSTR_active), MP_ROM_PTR(&network_lan_active_obj) },
    { MP_ROM_QSTR(MP_QSTR_isconnected), MP_ROM_PTR(&network_lan_isconnected_obj) },
    { MP_ROM_QSTR(MP_QSTR_ifconfig), MP_ROM_PTR(&network_lan_ifconfig_obj) },
    { MP_ROM_QSTR(MP_QSTR_ipconfig), MP_ROM_PTR(&network_lan_ipconfig_obj) },
    { MP_ROM_QSTR(MP_QSTR_status), MP_ROM_PTR(&network_lan_status_obj) },
    { MP_ROM_QSTR(MP_QSTR_config), MP_ROM_PTR(&network_lan_config_obj) },
};
static MP_DEFINE_CONST_DICT(network_lan_locals_dict, network_lan_locals_dict_table);

MP_DEFINE_CONST_OBJ_TYPE(
    network_lan_type,
    MP_QSTR_LAN,
    MP_TYPE_FLAG_NONE,
    make_new, network_lan_make_new,
    print, network_lan_print,
    locals_dict, &network_lan_locals_dict
    );
