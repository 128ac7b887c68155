"""A tiny random-init RoBERTa fill-mask model with a BPE tokenizer trained on a given corpus, saved with
save_pretrained. It stands in for distilroberta-base where no weights can be downloaded (tests, benches):
the same transformers code path, seconds to build."""

from __future__ import annotations

from pathlib import Path


def build_tiny_mlm(folder: Path, corpus: list[str], vocab_size: int = 300, seed: int = 0) -> str:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=vocab_size, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    # from_pretrained(folder) reads vocab.json + merges.txt (transformers 5 ignores vocab_file=/merges_file=)
    tok = RobertaTokenizerFast.from_pretrained(str(folder))
    torch.manual_seed(seed)
    cfg = RobertaConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=tok.pad_token_id)
    RobertaForMaskedLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)
