import torch
from torch import nn

from dept_vl import DePTConfig, attach_dept, param_groups


class TinyCustomModel(nn.Module):
    """A user's own model: it only needs get_input_embeddings() and to accept inputs_embeds."""

    def __init__(self, vocab=50, d=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.body = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, 2, 32, dropout=0.0, batch_first=True), 1)
        self.head = nn.Linear(d, vocab)

    def get_input_embeddings(self):
        return self.embed

    def forward(self, inputs_embeds, attention_mask, labels=None):
        logits = self.head(self.body(inputs_embeds, src_key_padding_mask=attention_mask == 0))
        loss = None if labels is None else nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                                                         ignore_index=-100)
        return loss, logits


def test_custom_model_learns_through_dept_only():
    torch.manual_seed(0)
    model = TinyCustomModel()
    wrapped = attach_dept(model, DePTConfig(prompt_length=3, r=4, max_length=16))
    ids = torch.randint(0, 50, (4, 6))
    labels = torch.randint(0, 50, (4, 6))
    before = {n: p.clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(param_groups(wrapped, prompt_lr=0.1, lowrank_lr=1e-2))
    losses = []
    for _ in range(30):
        loss, logits = wrapped(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert logits.shape == (4, 3 + 6, 50)
    assert losses[-1] < losses[0] - 0.3
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_hf_seq2seq_generate_agrees_with_forward(tiny_t5_dir):
    from transformers import T5ForConditionalGeneration

    t5 = T5ForConditionalGeneration.from_pretrained(tiny_t5_dir)
    torch.manual_seed(0)
    wrapped = attach_dept(t5, DePTConfig(prompt_length=4, r=2, max_length=32))
    nn.init.normal_(wrapped.dept.lora_embedding_B)
    ids = torch.randint(5, 1000, (2, 7))
    gen = wrapped.generate(input_ids=ids, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    with torch.no_grad():
        logits = wrapped(input_ids=ids, decoder_input_ids=gen[:, :-1]).logits
    assert torch.equal(logits.argmax(-1), gen[:, 1:])
    assert not any(p.requires_grad for p in t5.parameters())


def test_decoder_only_labels_are_shifted_by_the_prompt(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    llama = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    wrapped = attach_dept(llama, DePTConfig(prompt_length=4, r=2, max_length=32))
    ids = torch.randint(5, 1000, (2, 7))
    out = wrapped(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids)
    assert out.logits.shape[1] == 4 + 7 and torch.isfinite(out.loss)
