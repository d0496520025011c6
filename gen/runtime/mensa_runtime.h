/* mensa runtime: replays a network's command list on mensa accelerators.
 *
 * A bare-metal SoC (or a simulation harness) links mensa_runtime.c and gives it a
 * mensa_hal_t: how to read and write an accelerator's 32-bit registers and how to wait for
 * an interrupt. mensa_run() issues every command of the list once the commands it depends
 * on are done, each accelerator running its own commands in list order, so independent
 * layers run on different accelerators at once. The command list is written by mensa's
 * network compiler (mensa.contract.network); its format is in that module's docstring.
 *
 * The register offsets come from the generated register map header (mensa_regs.h, written
 * by `mensa verilog`): the control registers sit at the same offsets in every accelerator.
 */
#ifndef MENSA_RUNTIME_H
#define MENSA_RUNTIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MENSA_LIST_MAGIC   0x4C434E4Du   /* "MNCL" */
#define MENSA_LIST_VERSION 1u

#ifndef MENSA_MAX_UNITS
#define MENSA_MAX_UNITS 8u                /* accelerators a list may name */
#endif
#ifndef MENSA_MAX_COMMANDS
#define MENSA_MAX_COMMANDS 4096u          /* commands a list may hold */
#endif

typedef struct mensa_hal {
    void *ctx;
    /* read / write the 32-bit register at byte offset `offset` of accelerator `unit` */
    uint32_t (*read)(void *ctx, uint32_t unit, uint32_t offset);
    void (*write)(void *ctx, uint32_t unit, uint32_t offset, uint32_t value);
    /* return once an interrupt may have arrived (WFI on a CPU; a simulation advances time) */
    void (*wait)(void *ctx);
    /* called when command `command` is done, with the cycles its accelerator counted; may be NULL */
    void (*done)(void *ctx, uint32_t command, uint64_t cycles);
} mensa_hal_t;

typedef enum {
    MENSA_OK = 0,
    MENSA_BAD_LIST = -1,      /* wrong magic or version, or truncated */
    MENSA_TOO_BIG = -2,       /* more commands or units than MENSA_MAX_COMMANDS / MENSA_MAX_UNITS */
    MENSA_BAD_DEPENDENCY = -3 /* a command depends on itself or a later command */
} mensa_status_t;

/* Run every command of `list` (`words` 32-bit words). Returns MENSA_OK once all are done. */
mensa_status_t mensa_run(const mensa_hal_t *hal, const uint32_t *list, uint32_t words);

/* The number of commands in `list`, or a negative mensa_status_t. */
int32_t mensa_list_commands(const uint32_t *list, uint32_t words);

#ifdef __cplusplus
}
#endif

#endif
