"""A tiny random DNA-LLM built in-process in well under a second: for tests and the ``tiny`` recipe.

Byte-level BPE tokenizer trained on a few sentences (so any text encodes), a
ChatML chat template like SmolLM2's, a 2-layer Llama of width 32 and the
``tiny`` DNA encoder. Same code paths as the real default, random weights.
"""

from __future__ import annotations

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "<think>The variant changes a codon.</think>\nAnswer: pathogenic",
    "Answer: benign. Is this variant pathogenic or benign? Reference and alternate DNA windows.",
    "missense synonymous nonsense splice intron LOF FUNC loss of function the a an of in",
]


def tiny_tokenizer(vocab_size: int = 320):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token="<|im_start|>")
    fast.chat_template = CHATML_TEMPLATE
    return fast


def tiny_text_config(vocab_size: int, hidden: int = 32, layers: int = 2) -> dict:
    return dict(model_type="llama", hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=2048,
                tie_word_embeddings=True, rms_norm_eps=1e-5)


def build_tiny(seed: int = 0, pooling: str = "mean", pool_stride: int = 16, dna_encoder: str = "tiny",
               dna_config: dict | None = None):
    """(model, processor): a random tiny DNA-LLM with its processor, deterministic for a given seed."""
    import torch

    from bioreason.configuration import DNALLMConfig
    from bioreason.modeling import DNALLMForCausalLM
    from bioreason.processing import DNALLMProcessor

    torch.manual_seed(seed)
    tok = tiny_tokenizer()
    proc = DNALLMProcessor(tok, dna_encoder, dna_config, pool_stride=pool_stride)
    cfg = DNALLMConfig(text_config=tiny_text_config(len(tok)), dna_encoder=dna_encoder, dna_config=dna_config,
                       pooling=pooling, pool_stride=pool_stride, dna_start_token_id=proc.dna_start_id,
                       dna_pad_token_id=proc.dna_pad_id, dna_end_token_id=proc.dna_end_id,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, model_id="tiny-random")
    cfg.text_config.eos_token_id = tok.eos_token_id
    cfg.text_config.pad_token_id = tok.pad_token_id
    model = DNALLMForCausalLM(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model.eval(), proc
