// machine module hooks for the mplab board; included by extmod/modmachine.c.

#include "board.h"



static void mp_machine_idle(void) {
    mplab_wait_for_event();
}

static void mp_machine_reset(void) {
    mplab_system_reset();
}

static mp_int_t mp_machine_reset_cause(void) {
    return 0;
}
