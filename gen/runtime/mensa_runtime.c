/* mensa runtime: see mensa_runtime.h. */
#include "mensa_runtime.h"
#include "mensa_regs.h"

#include <stddef.h>

enum { HEAD = 3, CMD = 6 };   /* words of the list's header and of a command's fixed part */

typedef struct {
    const uint32_t *list;
    uint32_t words;
    uint32_t count;
    uint32_t units;
    uint8_t done[MENSA_MAX_COMMANDS];
    uint32_t next[MENSA_MAX_UNITS];     /* word offset of the unit's next command to look at */
    uint32_t next_index[MENSA_MAX_UNITS];
    int32_t running[MENSA_MAX_UNITS];   /* the command the unit runs, or -1 */
} state_t;

static state_t state;

static uint32_t command_words(const uint32_t *cmd)
{
    return CMD + cmd[1] + 2u * cmd[2];
}

int32_t mensa_list_commands(const uint32_t *list, uint32_t words)
{
    if (words < HEAD || list[0] != MENSA_LIST_MAGIC || list[1] != MENSA_LIST_VERSION)
        return MENSA_BAD_LIST;
    uint32_t at = HEAD;
    for (uint32_t i = 0; i < list[2]; i++) {
        if (at + CMD > words || at + command_words(list + at) > words)
            return MENSA_BAD_LIST;
        at += command_words(list + at);
    }
    if (at != words)
        return MENSA_BAD_LIST;
    if (list[2] > MENSA_MAX_COMMANDS)
        return MENSA_TOO_BIG;
    return (int32_t)list[2];
}

/* Move the unit's cursor to its next command not yet issued (or to the list's end). */
static void seek(state_t *s, uint32_t unit)
{
    while (s->next_index[unit] < s->count) {
        const uint32_t *cmd = s->list + s->next[unit];
        if (cmd[0] == unit && !s->done[s->next_index[unit]] && s->running[unit] != (int32_t)s->next_index[unit])
            return;
        s->next[unit] += command_words(cmd);
        s->next_index[unit]++;
    }
}

static int ready(const state_t *s, const uint32_t *cmd)
{
    for (uint32_t d = 0; d < cmd[1]; d++)
        if (!s->done[cmd[CMD + d]])
            return 0;
    return 1;
}

static void issue(const mensa_hal_t *hal, uint32_t unit, const uint32_t *cmd)
{
    const uint32_t *w = cmd + CMD + cmd[1];
    for (uint32_t i = 0; i < cmd[2]; i++)
        hal->write(hal->ctx, unit, w[2 * i], w[2 * i + 1]);
    hal->write(hal->ctx, unit, MENSA_IRQ_ENABLE_OFFSET, MENSA_IRQ_ENABLE_DONE);
    hal->write(hal->ctx, unit, MENSA_CTRL_OFFSET, MENSA_CTRL_START);
}

static int finished(const mensa_hal_t *hal, state_t *s, uint32_t unit)
{
    uint32_t status = hal->read(hal->ctx, unit, MENSA_STATUS_OFFSET);
    if ((status & MENSA_STATUS_BUSY) || !(status & MENSA_STATUS_DONE))
        return 0;
    uint64_t cycles = hal->read(hal->ctx, unit, MENSA_CYCLES_TOTAL_LO_OFFSET);
    cycles |= (uint64_t)hal->read(hal->ctx, unit, MENSA_CYCLES_TOTAL_HI_OFFSET) << 32;
    hal->write(hal->ctx, unit, MENSA_IRQ_STATUS_OFFSET, MENSA_IRQ_STATUS_DONE);
    uint32_t index = (uint32_t)s->running[unit];
    s->done[index] = 1;
    s->running[unit] = -1;
    if (hal->done)
        hal->done(hal->ctx, index, cycles);
    return 1;
}

mensa_status_t mensa_run(const mensa_hal_t *hal, const uint32_t *list, uint32_t words)
{
    int32_t count = mensa_list_commands(list, words);
    if (count < 0)
        return (mensa_status_t)count;
    state_t *s = &state;
    s->list = list;
    s->words = words;
    s->count = (uint32_t)count;
    s->units = 0;
    for (uint32_t i = 0, at = HEAD; i < s->count; i++) {
        const uint32_t *cmd = list + at;
        if (cmd[0] >= MENSA_MAX_UNITS)
            return MENSA_TOO_BIG;
        if (cmd[0] + 1 > s->units)
            s->units = cmd[0] + 1;
        for (uint32_t d = 0; d < cmd[1]; d++)
            if (cmd[CMD + d] >= i)
                return MENSA_BAD_DEPENDENCY;
        s->done[i] = 0;
        at += command_words(cmd);
    }
    for (uint32_t u = 0; u < s->units; u++) {
        s->next[u] = HEAD;
        s->next_index[u] = 0;
        s->running[u] = -1;
        seek(s, u);
    }
    uint32_t left = s->count;
    while (left) {
        int moved = 0;
        for (uint32_t u = 0; u < s->units; u++) {
            if (s->running[u] >= 0 && finished(hal, s, u)) {
                left--;
                moved = 1;
                seek(s, u);
            }
            if (s->running[u] < 0 && s->next_index[u] < s->count) {
                const uint32_t *cmd = list + s->next[u];
                if (ready(s, cmd)) {
                    s->running[u] = (int32_t)s->next_index[u];
                    issue(hal, u, cmd);
                    moved = 1;
                }
            }
        }
        if (!moved)
            hal->wait(hal->ctx);
    }
    return MENSA_OK;
}
