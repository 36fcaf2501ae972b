/* gpt.h: the public API of the model module (GPT-2 on the CPU).
 *
 * The model owns four flat float buffers: parameters, gradients and the two
 * AdamW moments. All four share one tensor table (name, shape, offset), so a
 * tensor is found at the same offset in each. Sharding, bucketed reduction and
 * checkpoints later work on ranges of these buffers through the table alone.
 *
 * Every function that can fail returns a gpt_status and, on failure, writes a
 * one-line message into the caller's buffer (see gpt_error_t). Nothing here
 * exits or aborts on user input. */
#ifndef GPT_H
#define GPT_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    GPT_OK = 0,
    GPT_ERR_CONFIG = 1, /* the user asked for an impossible configuration */
    GPT_ERR_NOMEM = 2,  /* an allocation failed */
    GPT_ERR_INPUT = 3,  /* bad input data (e.g. a token id outside the vocab) */
    GPT_ERR_HOOK = 4,   /* the unit hook failed (its message is passed on) */
    GPT_ERR_DEVICE = 5, /* a CUDA, cuBLASLt or driver call failed (CUDA backend) */
} gpt_status;

/* Caller-owned buffer for a one-line error message. */
#define GPT_ERRLEN 256
typedef char gpt_error_t[GPT_ERRLEN];

typedef struct {
    int n_layer;
    int n_head;
    int n_embd;       /* channels C */
    int max_seq;      /* maximum sequence length (rows of wpe) */
    int vocab;        /* real vocabulary size V */
    int padded_vocab; /* V rounded up to a multiple of 64; filled in by gpt_config_finish */
} gpt_config;

/* Looks up a preset by name: "d1".."d48" (depth N, 64*N channels, N heads,
 * max_seq 1024, vocab 256) or "gpt2-124M", "gpt2-350M", "gpt2-774M",
 * "gpt2-1558M" (vocab 50257). Returns GPT_ERR_CONFIG for an unknown name. */
gpt_status gpt_config_preset(const char *name, gpt_config *cfg, gpt_error_t err);

/* Validates cfg and fills in padded_vocab. Every field must be positive and
 * n_head must divide n_embd. */
gpt_status gpt_config_finish(gpt_config *cfg, gpt_error_t err);

/* ---- tensor table ---------------------------------------------------- */

#define GPT_NAME_MAX 48
#define GPT_MAX_DIMS 2

typedef struct {
    char name[GPT_NAME_MAX]; /* e.g. "h.3.attn.c_attn.weight" */
    int ndim;
    int shape[GPT_MAX_DIMS]; /* logical shape; wte is (padded_vocab, C) */
    size_t offset;           /* in floats from the start of a flat buffer */
    size_t numel;
    int decay;               /* 1 for 2-D weights that take weight decay */
} gpt_tensor;

/* Per-layer parameters, in table order inside each layer's block. */
enum {
    GPT_LN1_W, GPT_LN1_B, GPT_QKV_W, GPT_QKV_B, GPT_ATTPROJ_W, GPT_ATTPROJ_B,
    GPT_LN2_W, GPT_LN2_B, GPT_FC_W, GPT_FC_B, GPT_FCPROJ_W, GPT_FCPROJ_B,
    GPT_LAYER_TENSORS
};

/* Table layout: wte, wpe, then each layer's GPT_LAYER_TENSORS tensors in the
 * order above (so one layer is one contiguous range), then ln_f.weight and
 * ln_f.bias. Offsets are aligned to 16 floats; gaps are zero. */
typedef struct {
    gpt_tensor *t;
    int count;
    size_t total; /* floats in each flat buffer, including alignment gaps */
} gpt_table;

/* Index helpers into gpt_table.t. */
#define GPT_T_WTE 0
#define GPT_T_WPE 1
#define GPT_T_LAYER(l, which) (2 + (l) * GPT_LAYER_TENSORS + (which))
#define GPT_T_LNF_W(cfg) (2 + (cfg)->n_layer * GPT_LAYER_TENSORS)
#define GPT_T_LNF_B(cfg) (GPT_T_LNF_W(cfg) + 1)

/* Builds the table for a finished config (see gpt_config_finish). */
gpt_status gpt_table_build(gpt_table *tab, const gpt_config *cfg, gpt_error_t err);
void gpt_table_free(gpt_table *tab);

/* Returns the tensor with this name, or NULL. */
const gpt_tensor *gpt_table_find(const gpt_table *tab, const char *name);

/* ---- random numbers ------------------------------------------------------ */

/* A small seeded generator (splitmix64) shared by initialisation and
 * sampling, so that both are reproducible from a seed alone. */
typedef struct { uint64_t s; } gpt_rng;
void gpt_rng_seed(gpt_rng *r, uint64_t seed);
uint64_t gpt_rng_u64(gpt_rng *r);
float gpt_rng_uniform(gpt_rng *r); /* in [0, 1) */
float gpt_rng_normal(gpt_rng *r);  /* N(0, 1) */

/* ---- the model --------------------------------------------------------- */

typedef struct gpt_acts gpt_acts; /* activations; private to model/ */
typedef struct gpt_model gpt_model;

/* ---- units: the pieces ZeRO gathers and reduces ------------------------- */

/* A unit is one contiguous range of the flat buffers: unit 0 holds the
 * embeddings (wte, wpe), unit 1 + l layer l, and the last unit, n_layer + 1,
 * the final LayerNorm. Together they tile the buffers in order. Forward and
 * backward reach a unit's parameters and gradients only through
 * unit_params[u] and unit_grads[u], pointers to the unit's first float. They
 * point into params and grads by default; a unit hook may point them at
 * other memory (ZeRO-3's gathered copy, ZeRO-2's gradient slot). */
#define GPT_UNIT_EMB 0
#define GPT_UNIT_LAYER(l) (1 + (l))
#define GPT_UNIT_LNF(cfg) ((cfg)->n_layer + 1)
int gpt_num_units(const gpt_config *cfg);

/* What a pass is about to do with a unit, told to the unit hook. Forward:
 * NEED_PARAMS(emb); per layer NEED_PARAMS / DONE_PARAMS; NEED_PARAMS(lnf),
 * DONE_PARAMS(lnf); DONE_PARAMS(emb) after the logits. Backward, units in
 * the order emb (the tied LM head), lnf, last layer .. first layer: per unit
 * NEED_PARAMS, NEED_GRADS, DONE_PARAMS, GRADS_READY, except that the
 * embedding unit's GRADS_READY comes last (the token and position
 * embeddings' gradients are added at the very end). A unit's gradients are
 * added to, never overwritten, so a slot handed out on NEED_GRADS must hold
 * what should be added to (zeros for a fresh micro-step). */
typedef enum {
    GPT_NEED_PARAMS,  /* the pass is about to read the unit's parameters */
    GPT_DONE_PARAMS,  /* ... and will not read them again in this pass */
    GPT_NEED_GRADS,   /* backward is about to add into the unit's gradients */
    GPT_GRADS_READY,  /* the unit's gradients are final for this backward */
} gpt_unit_event;

/* Returns 0, or non-zero after writing a message into err, which stops the
 * pass with GPT_ERR_HOOK. backward is 1 inside gpt_backward. */
typedef int (*gpt_unit_fn)(void *ctx, gpt_model *m, gpt_unit_event ev, int unit,
                           int backward, gpt_error_t err);

/* Sets the hook of every later pass; NULL turns it off. */
void gpt_set_unit_hook(gpt_model *m, gpt_unit_fn fn, void *ctx);

/* Floats [lo, hi) of the flat buffers that unit u covers. */
void gpt_unit_range(const gpt_model *m, int u, size_t *lo, size_t *hi);

/* ZeRO-2/3: frees the whole gradient buffer (or parameter buffer); from then
 * on the unit hook must point unit_grads (unit_params) at memory on
 * NEED_GRADS (NEED_PARAMS). m->grads (m->params) becomes NULL. */
void gpt_release_grads(gpt_model *m);
void gpt_release_params(gpt_model *m);

struct gpt_model {
    gpt_config cfg;
    gpt_table table;
    float *params; /* table.total floats each */
    float *grads;
    float *m;      /* AdamW moments of the owned range [opt_lo, opt_hi) only */
    float *v;
    size_t opt_lo, opt_hi; /* the whole buffer unless sharded (ZeRO >= 1) */
    int adam_step;  /* number of optimizer steps taken */
    float **unit_params, **unit_grads; /* per unit, see "units" above */
    size_t *unit_lo;                   /* first float of each unit, and total */
    gpt_unit_fn unit_hook;             /* see gpt_set_unit_hook */
    void *unit_hook_ctx;
    int B, T;       /* activation capacity (set by gpt_model_create) */
    int cur_B, cur_T; /* shape of the last gpt_forward */
    gpt_acts *acts;
    float *logits;  /* (B, T, padded_vocab) after gpt_forward; padded columns are
                     * zero. gpt_backward overwrites it with the logit gradient. */
    float *losses;  /* (B, T) per-position cross-entropy after gpt_forward with targets */
    float mean_loss;
};

/* Allocates all buffers for micro-batch B and sequence length T (T <= max_seq),
 * all zero. Use gpt_init_weights or copy parameters in afterwards. */
gpt_status gpt_model_create(gpt_model *m, const gpt_config *cfg, int B, int T,
                            gpt_error_t err);
void gpt_model_free(gpt_model *m);

/* GPT-2 initialisation: N(0, 0.02) for weights and embeddings, residual output
 * projections (attn.c_proj, mlp.c_proj) scaled by 1/sqrt(2*n_layer), biases 0,
 * LayerNorm weights 1, padded vocabulary rows 0. Deterministic in seed. */
void gpt_init_weights(gpt_model *m, uint64_t seed);

/* Forward pass over tokens (B, T) with B <= m->B, T <= m->T. With targets
 * non-NULL it also computes per-position losses and mean_loss. Token ids must
 * be < vocab; GPT_ERR_INPUT otherwise. */
gpt_status gpt_forward(gpt_model *m, const int *tokens, const int *targets,
                       int B, int T, gpt_error_t err);

/* ---- generation with a KV cache (decode.c) ------------------------------- */

/* Keys and values of every layer for up to cap positions of one sequence,
 * so that each generated token runs the model on one position: O(len) per
 * token instead of gpt_forward's O(len^2) over the whole context. */
typedef struct gpt_kv gpt_kv;

/* A cache for cap positions (1 <= cap <= max_seq), empty. */
gpt_status gpt_kv_create(gpt_kv **kv, const gpt_model *m, int cap, gpt_error_t err);
void gpt_kv_free(gpt_kv *kv);

/* Empties the cache and runs tokens[0..n) (n <= cap and n <= m->T) through
 * gpt_forward at B = 1, keeping their keys and values. Overwrites the
 * model's activations and logits. */
gpt_status gpt_kv_prefill(gpt_model *m, gpt_kv *kv, const int *tokens, int n,
                          gpt_error_t err);

/* Appends token at position gpt_kv_len(kv) (< cap): the logits for the
 * next position follow. Uses the unit hook as gpt_forward does. */
gpt_status gpt_kv_step(gpt_model *m, gpt_kv *kv, int token, gpt_error_t err);

/* Positions held, and the padded_vocab logits after the last position
 * (valid until the next prefill or step). */
int gpt_kv_len(const gpt_kv *kv);
const float *gpt_kv_logits(const gpt_kv *kv);

/* Sets the gradient buffer to zero (before the first micro-step); nothing
 * after gpt_release_grads. */
void gpt_zero_grad(gpt_model *m);

/* Backward pass of the last gpt_forward (which must have had targets).
 * Gradients are ADDED into m->grads, scaled by grad_scale (1/accum_steps for
 * gradient accumulation), so micro-steps accumulate. Fails only when the
 * unit hook does. */
gpt_status gpt_backward(gpt_model *m, float grad_scale, gpt_error_t err);

/* L2 norm of the whole gradient buffer. */
float gpt_grad_norm(const gpt_model *m);

typedef struct {
    float lr;
    float beta1, beta2, eps;
    float weight_decay;
    float grad_clip; /* <= 0 disables clipping */
} gpt_adamw;

/* Clips gradients to global norm grad_clip (pass the norm of the whole
 * gradient, computed once) and applies one AdamW step to the owned range
 * [opt_lo, opt_hi) of the parameters (all of them unless sharded). */
void gpt_update(gpt_model *m, const gpt_adamw *opt, float grad_norm);

/* The same step where this rank's parameters and gradients of the owned
 * range live in their own buffers: params[i] and grads[i] are float
 * opt_lo + i of the flat buffers (ZeRO-2/3's shards). */
void gpt_update_shard(gpt_model *m, const gpt_adamw *opt, float grad_norm, float *params,
                      const float *grads);

/* ZeRO: this rank keeps AdamW moments only for [lo, hi) of the flat buffers,
 * and gpt_update steps only that range; the moments shrink to hi - lo floats
 * (zeroed, so call it before the first step). */
gpt_status gpt_shard_optimizer(gpt_model *m, size_t lo, size_t hi, gpt_error_t err);

/* Parameter count, excluding alignment gaps and padded vocabulary rows. */
size_t gpt_num_params(const gpt_config *cfg);

/* Model FLOPs of one training step (forward + backward) over `tokens` tokens at
 * sequence length T: 6 * N * tokens for the matmul weights (N includes the LM
 * head, excludes wpe), plus 6 * n_layer * C * T * tokens for attention scores
 * and values (causal: half of the full square, as llm.c counts them; PaLM
 * and nanoGPT count the whole square, 12 * n_layer * C * T, and so report a
 * 7% higher MFU for GPT-2 124M at T = 1024). */
double gpt_flops_per_step(const gpt_config *cfg, int T, long tokens);

#endif
