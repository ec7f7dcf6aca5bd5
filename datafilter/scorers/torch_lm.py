"""Reference causal LM scored with plain PyTorch + transformers (GPU in bf16, CPU in fp32)."""

from __future__ import annotations

from datafilter.scorers.causal_lm import CausalLMScorer, Piece, batches_by_tokens, require

HEAD_CHUNK = 1024  # positions per logits chunk: the full-vocabulary logits never exist at once


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
            logprobs = torch.empty(len(targets), dtype=torch.float64)
            for start in range(0, len(targets), HEAD_CHUNK):
                logits = head(picked[start : start + HEAD_CHUNK]).float()
                chosen = logits.gather(1, target_ids[start : start + HEAD_CHUNK, None])[:, 0]
                logprobs[start : start + HEAD_CHUNK] = (
                    (chosen - torch.logsumexp(logits, dim=-1)).double().cpu()
                )
        sums = torch.zeros(len(pieces), dtype=torch.float64)
        sums.index_add_(0, owner, logprobs)
        return sums.tolist()
