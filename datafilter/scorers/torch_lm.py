"""Reference causal LM scored with plain PyTorch + transformers (GPU in bf16, CPU in fp32)."""

from __future__ import annotations

from datafilter.scorers.causal_lm import CausalLMScorer, Piece, batches_by_tokens, require

# Full-vocabulary fp32 logits computed at once: at most this many elements (256 MiB), so the
# whole batch's logits never exist together; with SmolLM2's 49,152-token vocabulary that is
# 1,365 positions per chunk.
HEAD_LOGITS_ELEMENTS = 1 << 26


class TorchLMScorer(CausalLMScorer):
    """Length-sorted batches; only the target token's log-prob is gathered, by a chunked
    logsumexp over the vocabulary (never a full fp32 log-softmax of the whole batch)."""

    name = "torch"
    version = 1

    def setup(self) -> None:
        torch = require("torch")
        transformers = require("transformers")
        opts = self.options
        self.device = (
            ("cuda" if torch.cuda.is_available() else "cpu")
            if opts.device == "auto"
            else opts.device
        )
        dtype = opts.dtype
        if dtype == "auto":
            dtype = "bfloat16" if self.device == "cuda" else "float32"
        self.model = transformers.AutoModelForCausalLM.from_pretrained(
            str(self.folder), dtype=getattr(torch, dtype)
        ).to(self.device)
        self.model.eval()
        self.load_tokenizer()
        self.max_length = self.window_length(self.model.config)
        self.pad_id = self.tokenizer.pad_token_id or 0

    def score_pieces(self, pieces: list[Piece]) -> list[float]:
        out = [0.0] * len(pieces)
        lengths = [len(tokens) for tokens, _ in pieces]
        for group in batches_by_tokens(lengths, self.options.max_tokens_per_batch):
            for i, value in zip(group, self._score_group([pieces[i] for i in group]), strict=True):
                out[i] = value
        return out

    def _score_group(self, pieces: list[Piece]) -> list[float]:
        torch = require("torch")
        longest = max(len(tokens) for tokens, _ in pieces)
        ids = torch.full((len(pieces), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(pieces), longest), dtype=torch.long)
        for r, (tokens, _) in enumerate(pieces):
            ids[r, : len(tokens)] = torch.tensor(tokens)
            mask[r, : len(tokens)] = 1
        # Token p of a row is predicted (by the hidden state at p - 1) when context <= p < len;
        # the boolean mask selects row by row, positions ascending.
        lengths = torch.tensor([len(tokens) for tokens, _ in pieces])
        contexts = torch.tensor([max(context, 1) for _, context in pieces])
        positions = torch.arange(1, longest)
        predicted = (positions >= contexts[:, None]) & (positions < lengths[:, None])
        owner = predicted.nonzero()[:, 0]
        targets = ids[:, 1:][predicted]
        with torch.inference_mode():
            hidden = self.model.base_model(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
            ).last_hidden_state
            picked = hidden[:, :-1][predicted.to(self.device)]
            head = self.model.get_output_embeddings()
            target_ids = targets.to(self.device)
            step = max(1, HEAD_LOGITS_ELEMENTS // head.weight.shape[0])
            # Stays on the device until the end: one transfer per batch, no sync per chunk.
            logprobs = torch.empty(len(targets), dtype=torch.float64, device=self.device)
            for start in range(0, len(targets), step):
                logits = head(picked[start : start + step]).float()
                chosen = logits.gather(1, target_ids[start : start + step, None])[:, 0]
                logprobs[start : start + step] = chosen - torch.logsumexp(logits, dim=-1)
            sums = torch.zeros(len(pieces), dtype=torch.float64, device=self.device)
            sums.index_add_(0, owner.to(self.device), logprobs)
        return sums.cpu().tolist()
