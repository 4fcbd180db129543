// hf.h: reads a Hugging Face checkpoint directory: LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM (q/k/v biases), Qwen3ForCausalLM (q/k norms), Phi3ForCausalLM (fused
// qkv_proj and gate_up_proj, split here), Gemma3ForCausalLM, and the text model of
// Gemma3ForConditionalGeneration (its text_config, its tensors under model.language_model.).
// Gemma's norms scale by (1 + w): hf_fill writes that sum, in f32, as the norm weights.
//
// Contract: POSIX and libc. The directory holds config.json, model.safetensors (or shards
// listed in model.safetensors.index.json) and tokenizer.json. config.json gives the header;
// every tensor's name, shape and dtype (F32, F16, BF16) is checked before anything is written.
// hf_fill yields our f32 tensors (a TensorData producer, writer.h), row by row from the files,
// with q and k rows permuted from Hugging Face's rotary layout (the two halves of each head)
// to ours (adjacent pairs), per query head for q and per kv head for k.
// tokenizer.json is a BPE with byte_fallback (Llama 2, Mistral, Phi-3) or byte-level (Llama 3,
// Qwen, SmolLM). Every error prints one line naming the file and returns -1.
#ifndef SEARCHLIGHT_HF_H
#define SEARCHLIGHT_HF_H

#include "model.h"
#include "convert/pieces.h"
#include "convert/safetensors.h"
#include "tokenizer.h"

// The architectures export reads (config.json's "architectures").
enum hf_family { HF_LLAMA, HF_MISTRAL, HF_QWEN2, HF_QWEN3, HF_PHI3, HF_GEMMA3, HF_GEMMA3_MM,
                 HF_FAMILY_COUNT };

typedef struct {
    SlHeader header;         // hyperparameters, f32 tensor types, bos/eos from config.json
    int family;              // enum hf_family
    const char *dir;
    StModel st;
    SlLayout layout;
    Pieces pieces;           // our tensors from the safetensors tensors
} HfModel;

// "LlamaForCausalLM", ... for an enum hf_family.
const char *hf_family_name(int family);

// Is path a directory holding config.json?
int hf_sniff(const char *path);

int hf_open(HfModel *m, const char *dir);
void hf_close(HfModel *m);

// TensorData fill (writer.h): bytes [offset, offset + n) of our f32 tensor t; ctx is an HfModel.
int hf_fill(void *ctx, int t, size_t offset, void *buf, size_t n);

// Reads dir/tokenizer.json into t for a model of vocab_size tokens with bos/eos ids. If
// adds_bos is not NULL, *adds_bos says whether the tokenizer starts a text with a special
// token (its post_processor, alone or in a Sequence, is a TemplateProcessing whose "single"
// template begins with one: Llama's do, Qwen's and SmolLM's do not).
// The chat template of the directory: tokenizer_config.json's "chat_template" (a string, or
// the "default" of a list of named ones), else the file chat_template.jinja. *out is malloc'd
// and NUL-terminated, or NULL (and *len 0) when the model has none. Returns 0, or -1 after one
// line (a malformed file, a template over SL_CHAT_TEMPLATE_MAX bytes).
int hf_chat_template(const char *dir, char **out, size_t *len);

int hf_tokenizer(Tokenizer *t, const char *dir, int vocab_size, int bos_id, int eos_id,
                 int *adds_bos);

#endif
