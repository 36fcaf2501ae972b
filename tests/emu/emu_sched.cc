// emu_sched.cc: runs a kernel launch on the CPU (see emu_cuda.h): the blocks
// one after another, the threads of a block as fibers that yield at
// barriers, shuffles and WMMA calls. A group (warp or block) at a barrier is
// let go only when all its live threads are there; threads that have
// returned count as arrived, as on the GPU. A block where every live thread
// waits and no group can go (threads of one warp split between a warp
// barrier and __syncthreads, or a warp barrier missing in some lanes) is a
// deadlock on the GPU too: reported, and the process aborts, which fails
// the test that launched it.
//
// Fibers switch with a few lines of x86-64 assembly (callee-saved registers
// and the stack pointer) rather than swapcontext, which makes a system call
// per switch and, under AddressSanitizer, clears the new stack's shadow each
// time: the attention tests took minutes. AddressSanitizer is told of each
// switch through its fiber interface instead.
//
// Races (GPT_EMU_TSAN, the race build): each CUDA thread is also a
// ThreadSanitizer fiber, and switching between fibers orders nothing, so two
// threads touching the same shared or global memory with no barrier between
// them are reported as a data race, whichever order the fibers ran in. What
// orders threads is what orders them on the GPU: a barrier (the group's
// arrivals release a sync object that each member acquires when let go)
// and the end of a block. Shuffles and WMMA calls order no memory: their
// lanes meet (AT_STEP) but release nothing. Blocks are ordered one
// after another, because static __shared__ variables are reused by the next
// block: a race between two blocks of one launch on global memory is not
// found. This file is built without instrumentation: its bookkeeping, which
// the scheduler and the fibers share, is not the kernels' memory; the copies
// of cp.async are reported to ThreadSanitizer explicitly.
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <map>
#include <vector>
#include "emu_cuda.h"
#include "emu_internal.h"

namespace emu {

uint3 g_thread_idx, g_block_idx;
dim3 g_block_dim, g_grid_dim;

// AT_STEP: at a warp's meeting point that orders no memory (warp_step).
enum State { RUN, AT_BLOCK, AT_WARP, AT_STEP, DONE };

struct Copy {
    void *dst;
    const void *src;
    int bytes, valid;
};

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

#if defined(GPT_EMU_TSAN)
#include <sanitizer/tsan_interface.h>
// Exported by ThreadSanitizer's runtime but not declared by its header.
extern "C" void __tsan_acquire(void *addr);
extern "C" void __tsan_release(void *addr);
extern "C" void __tsan_read_range(void *addr, unsigned long size);
extern "C" void __tsan_write_range(void *addr, unsigned long size);
#define EMU_TSAN 1
#else
#define EMU_TSAN 0
#endif

// emu_switch(&save, to): pushes the callee-saved registers, stores the stack
// pointer in save, loads to and pops the registers saved there.
extern "C" void emu_switch(void **save, void *to);
asm(R"(
    .text
    .globl emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
    .section .note.GNU-stack, "", @progbits
    .text
)");

struct Fiber {
    void *sp = nullptr;  // saved stack pointer while switched out
    char *stack = nullptr;
    State st = DONE;
    void *tsan = nullptr;  // its ThreadSanitizer fiber (race build)
    uint3 tid;
    int warp = 0, lane = 0;
    unsigned long long shfl_val = 0;
    unsigned shfl_seq = 0;
    std::vector<Copy> open;                 // cp.async since the last commit
    std::vector<std::vector<Copy>> groups;  // committed, oldest first
};

// Each fiber's stack: WMMA fragments hold whole tiles (1 KiB per fp32
// fragment), and the attention kernels keep a dozen of them per thread.
static const size_t STACK_BYTES = (size_t)512 << 10;
static const size_t TOP_FRAMES = (size_t)64 << 10;  // fiber_main and the switch, generously

static std::vector<Fiber> g_fibers;
static void *g_sched_sp;                       // the scheduler's, while a fiber runs
static const void *g_sched_bottom;            // its stack, for AddressSanitizer
static size_t g_sched_size;
static Fiber *g_cur;
static const std::function<void()> *g_body;
static const char *g_name;
static unsigned char *g_dyn;  // this block's dynamic shared memory
static std::map<const void *, int> g_smem_limit;  // cudaFuncSetAttribute's

// Race build: the sync objects of the block's barrier and of each warp's,
// two per group, used by alternate releases (a member let go at one release
// acquires its object after others may have arrived at the next), and the
// releases so far; g_done collects the threads that returned, g_start
// what the scheduler knew as the block started (the host's work before the
// launch, and earlier blocks).
#if EMU_TSAN
static char g_block_sync[2], g_warp_sync[32][2], g_done, g_start;
static void *g_sched_tsan;
#endif
static unsigned long long g_block_epoch, g_warp_epoch[32];

[[noreturn]] static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "emu: kernel %s, block (%u,%u,%u)", g_name ? g_name : "?", g_block_idx.x,
            g_block_idx.y, g_block_idx.z);
    if (g_cur) fprintf(stderr, ", thread (%u,%u,%u)", g_cur->tid.x, g_cur->tid.y, g_cur->tid.z);
    fprintf(stderr, ": ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

// Switches from this stack (saving its pointer in save) to the one at to,
// whose memory is [bottom, bottom + size); exiting: this stack is done.
static void switch_stack(void **save, void *to, const void *bottom, size_t size, bool exiting) {
#if EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(exiting ? nullptr : &fake, bottom, size);
    emu_switch(save, to);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    (void)bottom, (void)size, (void)exiting;
    emu_switch(save, to);
#endif
}

static void to_scheduler(Fiber *me, bool exiting) {
#if EMU_TSAN
    if (exiting) __tsan_release(&g_done);
    __tsan_switch_to_fiber(g_sched_tsan, __tsan_switch_to_fiber_no_sync);
#endif
    switch_stack(&me->sp, g_sched_sp, g_sched_bottom, g_sched_size, exiting);
}

// From the scheduler into f. (In the race build, a synchronising switch
// costs a vector clock each way: a thread acquires the scheduler's only as
// it starts, in fiber_main.)
static void enter(Fiber *f) {
#if EMU_TSAN
    __tsan_switch_to_fiber(f->tsan, __tsan_switch_to_fiber_no_sync);
#endif
    switch_stack(&g_sched_sp, f->sp, f->stack, STACK_BYTES, false);
}

static void yield(State s) {
    if (!g_cur) fail("a barrier outside a kernel");
    Fiber *me = g_cur;
    me->st = s;
#if EMU_TSAN
    char *sync = s == AT_BLOCK  ? &g_block_sync[g_block_epoch & 1]
                 : s == AT_WARP ? &g_warp_sync[me->warp][g_warp_epoch[me->warp] & 1]
                                : nullptr;
    if (sync) __tsan_release(sync);
#endif
    to_scheduler(me, false);
#if EMU_TSAN
    if (sync) __tsan_acquire(sync);
#endif
}

void sync_block() { yield(AT_BLOCK); }
void sync_warp() { yield(AT_WARP); }
void warp_step() { yield(AT_STEP); }

unsigned long long shfl_xor(unsigned long long bits, int lane_mask, int width) {
    Fiber *me = g_cur;
    if (!me) fail("a shuffle outside a kernel");
    if (width < 1 || width > 32 || (width & (width - 1)))
        fail("shuffle width %d is not a power of 2 up to 32", width);
    me->shfl_val = bits;
    me->shfl_seq++;
    yield(AT_STEP);
    int seg = me->lane & ~(width - 1), src = seg | ((me->lane ^ lane_mask) & (width - 1));
    size_t at = (size_t)me->warp * 32 + (size_t)src;
    if (at >= g_fibers.size() || g_fibers[at].shfl_seq != me->shfl_seq)
        fail("__shfl_xor_sync reads lane %d, which did not take part in this shuffle", src);
    unsigned long long r = g_fibers[at].shfl_val;
    yield(AT_STEP);  // nobody overwrites a value before every lane has read
    return r;
}

void *dyn_smem() { return g_dyn; }

bool warp_leader() {
    size_t w0 = (size_t)g_cur->warp * 32;
    for (size_t i = w0; i < w0 + 32 && i < g_fibers.size(); i++)
        if (g_fibers[i].st != DONE) return &g_fibers[i] == g_cur;
    return false;
}

int lane_id() { return g_cur->lane; }

float *warp_tile() {
    static float tiles[32][256];  // a block has at most 32 warps
    return tiles[g_cur->warp];
}

void cp_async(void *dst, const void *src, int bytes, int valid) {
    if (!g_cur) fail("cp.async outside a kernel");
    g_cur->open.push_back(Copy{dst, src, bytes, valid});
}

void cp_async_commit() { g_cur->groups.push_back(std::move(g_cur->open)), g_cur->open.clear(); }

// Lands every committed group but the n newest; groups land in order.
void cp_async_wait(int n) {
    std::vector<std::vector<Copy>> &g = g_cur->groups;
    while ((int)g.size() > n) {
        for (const Copy &c : g.front()) {
#if EMU_TSAN
            if (c.valid) __tsan_read_range((void *)c.src, (unsigned long)c.bytes);
            __tsan_write_range(c.dst, (unsigned long)c.bytes);
#endif
            if (c.valid)
                memcpy(c.dst, c.src, (size_t)c.bytes);
            else
                memset(c.dst, 0, (size_t)c.bytes);
        }
        g.erase(g.begin());
    }
}

// A fiber's first frame: never returns (its return address is 0).
static void fiber_main() {
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &g_sched_bottom, &g_sched_size);
#endif
#if EMU_TSAN
    __tsan_acquire(&g_start);
#endif
    (*g_body)();
    g_cur->st = DONE;
    to_scheduler(g_cur, true);
    __builtin_unreachable();
}

// A stack that emu_switch enters by "returning" into fiber_main with the
// System V alignment of a function entry (rsp + 8 a multiple of 16).
static void *fresh_stack(char *stack) {
#if EMU_ASAN
    // The last fiber on this stack never returned from fiber_main: the
    // redzones of the frames it left (fiber_main's and the switch's, at the
    // top; deeper frames returned and cleaned up) are still poisoned.
    __asan_unpoison_memory_region(stack + STACK_BYTES - TOP_FRAMES, TOP_FRAMES);
#endif
    uintptr_t top = ((uintptr_t)(stack + STACK_BYTES)) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = nullptr;                    // fiber_main's return address
    *--sp = (void *)&fiber_main;        // where emu_switch's ret goes
    for (int i = 0; i < 6; i++) *--sp = nullptr;  // rbp rbx r12 r13 r14 r15
    return sp;
}

// Lets waiting groups go; returns 0 when nobody can (deadlock or all done).
static int release(size_t n) {
    int released = 0, live = 0, at_block = 0;
    for (size_t w0 = 0; w0 < n; w0 += 32) {
        int wl = 0, ww = 0;
        for (size_t i = w0; i < n && i < w0 + 32; i++) {
            State s = g_fibers[i].st;
            if (s == DONE) continue;
            wl++, live++;
            ww += s == AT_WARP || s == AT_STEP;
            at_block += s == AT_BLOCK;
        }
        if (ww > 0 && ww == wl) {
            for (size_t i = w0; i < n && i < w0 + 32; i++)
                if (g_fibers[i].st == AT_WARP || g_fibers[i].st == AT_STEP) g_fibers[i].st = RUN;
            g_warp_epoch[w0 / 32]++;
            released = 1;
        }
    }
    if (released || live == 0) return released;
    if (at_block == live) {
        for (size_t i = 0; i < n; i++)
            if (g_fibers[i].st == AT_BLOCK) g_fibers[i].st = RUN;
        g_block_epoch++;
        return 1;
    }
    g_cur = nullptr;
    fail("deadlock: %d live threads, %d at __syncthreads, the rest at a warp barrier that "
         "part of their warp never reaches", live, at_block);
}

static void run_block(size_t n) {
    for (size_t i = 0; i < n; i++) {
        Fiber &f = g_fibers[i];
        if (!f.stack) {
            void *p = mmap(nullptr, STACK_BYTES, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED) fail("no memory for a fiber stack");
            f.stack = (char *)p;
#if EMU_TSAN
            f.tsan = __tsan_create_fiber(0);
            char name[32];
            snprintf(name, sizeof name, "CUDA thread %zu", i);
            __tsan_set_fiber_name(f.tsan, name);
#endif
        }
        f.tid.x = (unsigned)(i % g_block_dim.x);
        f.tid.y = (unsigned)(i / g_block_dim.x % g_block_dim.y);
        f.tid.z = (unsigned)(i / ((size_t)g_block_dim.x * g_block_dim.y));
        f.warp = (int)(i / 32), f.lane = (int)(i % 32);
        f.shfl_seq = 0, f.open.clear(), f.groups.clear();
        f.st = RUN;
        f.sp = fresh_stack(f.stack);
    }
#if EMU_TSAN
    __tsan_release(&g_start);
#endif
    do {
        for (size_t i = 0; i < n; i++) {
            if (g_fibers[i].st != RUN) continue;
            g_cur = &g_fibers[i];
            g_thread_idx = g_cur->tid;
            enter(g_cur);
        }
        g_cur = nullptr;
    } while (release(n));
#if EMU_TSAN
    __tsan_acquire(&g_done);  // the next block, and the host, come after this one
#endif
}

void set_smem_limit(const void *kernel, int bytes) { g_smem_limit[kernel] = bytes; }

// The launch's configuration, checked as the GPU checks it (H100 limits).
static cudaError_t check_launch(const void *kernel, dim3 grid, dim3 block, size_t smem) {
    size_t threads = (size_t)block.x * block.y * block.z;
    if (!grid.x || !grid.y || !grid.z || !threads || threads > 1024 || block.z > 64 ||
        grid.y > 65535 || grid.z > 65535 || grid.x > 0x7fffffffu)
        return cudaErrorInvalidConfiguration;
    std::map<const void *, int>::const_iterator it = g_smem_limit.find(kernel);
    size_t allowed = it == g_smem_limit.end() ? 48 * 1024 : (size_t)it->second;
    if (smem > allowed) return cudaErrorInvalidValue;
    return cudaSuccess;
}

void run(const char *name, const void *kernel, dim3 grid, dim3 block, size_t smem,
         cudaStream_t stream, const std::function<void()> &body) {
    (void)stream;  // everything runs at once, in issue order
    cudaError_t e = check_launch(kernel, grid, block, smem);
    if (e != cudaSuccess) {
        set_last_error(e);
        return;
    }
    size_t n = (size_t)block.x * block.y * block.z;
    if (g_fibers.size() < n) g_fibers.resize(n);
#if EMU_TSAN
    g_sched_tsan = __tsan_get_current_fiber();
#endif
    g_name = name, g_body = &body;
    g_block_dim = block, g_grid_dim = grid;
    size_t bytes = (smem + 127) / 128 * 128 + 128;  // 128-byte aligned, as __align__ asks
    g_dyn = (unsigned char *)aligned_alloc(128, bytes);
    if (!g_dyn) fail("no memory for %zu bytes of shared memory", smem);
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                g_block_idx = make_uint3(x, y, z);
                memset(g_dyn, 0xFF, bytes);  // NaN in fp32 and bf16: unwritten reads show
                run_block(n);
            }
    free(g_dyn);
    g_name = nullptr, g_body = nullptr, g_dyn = nullptr;
}

}  // namespace emu
