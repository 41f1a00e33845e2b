/*
 * qemu-insn-count: a QEMU TCG plugin that counts guest instructions exactly.
 *
 * Every executed guest instruction adds one to a counter (an inline add that TCG emits in front
 * of each translated instruction). Each time the instruction at address `marker` is about to
 * execute, the plugin writes the number of instructions executed before it as a line
 * "M <count>"; when QEMU exits it writes "T <total>". A firmware brackets the region to measure
 * with two calls of an `#[inline(never)]` marker function, and the difference of two
 * consecutive "M" lines is the exact instruction count of the region (plus the few
 * instructions of one call and return of the marker function).
 *
 * Arguments (after the plugin path in `-plugin`):
 *   marker=<address>  the marker instruction's address, decimal or 0x-hex (for a Thumb
 *                     function: its symbol address with bit 0 cleared); without it, only the
 *                     total is written
 *   out=<file>        where the lines go (default: standard error)
 *
 * Built against the plugin API version 1, which Debian's qemu-system-arm 7.2 loads (Debian
 * ships no plugin header, so the few declarations used are below, as QEMU 7.2's
 * include/qemu/qemu-plugin.h defines them):
 *
 *   gcc -shared -fPIC -O2 -Wall -Wextra -o target/libinsn.so tools/qemu-insn-count.c
 *   qemu-system-arm ... -icount shift=0 \
 *     -plugin target/libinsn.so,marker=0x1234,out=counts.txt -kernel firmware.elf
 *
 * One vCPU is assumed (the Cortex-M boards have one): the counter is not per vCPU.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- The subset of QEMU's plugin API (version 1) this plugin uses. ---- */

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t; /* only passed through */
struct qemu_plugin_tb;
struct qemu_plugin_insn;

enum qemu_plugin_cb_flags {
    QEMU_PLUGIN_CB_NO_REGS,
    QEMU_PLUGIN_CB_R_REGS,
    QEMU_PLUGIN_CB_RW_REGS,
};

enum qemu_plugin_op {
    QEMU_PLUGIN_INLINE_ADD_U64,
};

typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
                                                  qemu_plugin_vcpu_tb_trans_cb_t cb);
extern void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
                                                   qemu_plugin_vcpu_udata_cb_t cb,
                                                   enum qemu_plugin_cb_flags flags,
                                                   void *userdata);
extern void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn,
                                                       enum qemu_plugin_op op, void *ptr,
                                                       uint64_t imm);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb,
                                           void *userdata);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb,
                                                        size_t idx);
extern uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);

/* QEMU refuses a plugin whose version it does not support. */
__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* ---- The counter. ---- */

static struct {
    uint64_t executed;   /* guest instructions executed so far */
    uint64_t marker;     /* address of the marker instruction */
    bool have_marker;
    FILE *out;
} state;

/* Runs when the marker instruction is about to execute. QEMU emits an instruction's callbacks
 * before its inline operations, so the count excludes the marker instruction itself; either
 * way every "M" line would be offset alike, and differences are exact. */
static void on_marker(unsigned int vcpu_index, void *userdata)
{
    (void)vcpu_index;
    (void)userdata;
    fprintf(state.out, "M %" PRIu64 "\n", state.executed);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        if (state.have_marker && qemu_plugin_insn_vaddr(insn) == state.marker) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS,
                                                   NULL);
        }
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                   &state.executed, 1);
    }
}

static void on_qemu_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    fprintf(state.out, "T %" PRIu64 "\n", state.executed);
    fflush(state.out);
    if (state.out != stderr) {
        fclose(state.out);
    }
}

/* `text` parsed as an address (decimal, or hex with 0x), or false. */
static bool parse_address(const char *text, uint64_t *value)
{
    char *end = NULL;
    errno = 0;
    unsigned long long parsed = strtoull(text, &end, 0);
    if (errno != 0 || end == text || *end != '\0') {
        return false;
    }
    *value = (uint64_t)parsed;
    return true;
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info,
                                                               int argc, char **argv)
{
    (void)info;
    const char *out_path = NULL;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "marker=", 7) == 0) {
            if (!parse_address(arg + 7, &state.marker)) {
                fprintf(stderr, "qemu-insn-count: bad marker address in `%s`\n", arg);
                return -1;
            }
            state.have_marker = true;
        } else if (strncmp(arg, "out=", 4) == 0 && arg[4] != '\0') {
            out_path = arg + 4;
        } else {
            fprintf(stderr,
                    "qemu-insn-count: unknown argument `%s` (expected marker=ADDR, out=FILE)\n",
                    arg);
            return -1;
        }
    }
    state.out = stderr;
    if (out_path != NULL) {
        state.out = fopen(out_path, "w");
        if (state.out == NULL) {
            fprintf(stderr, "qemu-insn-count: cannot write %s: %s\n", out_path,
                    strerror(errno));
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
    return 0;
}
