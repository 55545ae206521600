"""Reference chat prompt ids from transformers, independent of llama3-bench's Rust code.

Usage: chat_template.py MODEL_DIR OUT_JSON MESSAGES_JSON

Loads the checkpoint folder's tokenizer (tokenizer.json + tokenizer_config.json) with
AutoTokenizer and writes what `apply_chat_template(messages, add_generation_prompt=True)` returns,
with the end-of-sequence ids transformers' GenerationConfig reads from generation_config.json and
the date the template's strftime_now saw (the ids depend on it for Llama 3.2's template).
"""

import datetime
import json
import sys

import transformers
from transformers import AutoTokenizer, GenerationConfig


def main() -> None:
    model_dir, out_path, messages_json = sys.argv[1:4]
    messages = json.loads(messages_json)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    eos = GenerationConfig.from_pretrained(model_dir).eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    with open(out_path, "w") as f:
        json.dump(
            {
                "ids": [int(i) for i in ids],
                "text": tokenizer.decode(ids),
                "eos_token_id": [int(i) for i in eos],
                "date": datetime.datetime.now().strftime("%d %b %Y"),
                "transformers": transformers.__version__,
            },
            f,
        )


if __name__ == "__main__":
    main()
