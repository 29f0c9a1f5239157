"""The third-party models the package uses, by role, as their Hugging Face hub ids: the one place they are named.

Facts only (no imports), so every layer may read them, the pure-torch models included. Each is downloaded once
by transformers at first use (offline, a missing one is reported in one line with what to do); a local folder
can always stand in for a hub id.
"""

#: CLIP ViT-B/16: embeds new tags' names and descriptions (upstream's open set), teaches RAM and RAM++ during
#: fine-tuning (distillation, alignment), embeds region crops when cleaning with CLIP, and is a comparator of
#: ``fiftyone-ram compare``.
CLIP = "openai/clip-vit-base-patch16"
#: Grounding-DINO (the tiny one): finds a tag's regions when cleaning, prompted with the tag's name, and is a
#: comparator of ``fiftyone-ram compare`` (a tag's score: its best box's).
GROUNDING_DINO = "IDEA-Research/grounding-dino-tiny"
#: BERT's WordPiece vocabulary (uncased): Tag2Text's caption tokenizer, with upstream's two added tokens.
BERT_TOKENIZER = "bert-base-uncased"
#: SigLIP ViT-B/16 at 224 px: a comparator of ``fiftyone-ram compare`` (sigmoid image-text scores, as trained).
SIGLIP = "google/siglip-base-patch16-224"
#: BLIP ViT-B, COCO retrieval: a comparator of ``fiftyone-ram compare`` (its image-text contrastive head, ITC).
BLIP = "Salesforce/blip-itm-base-coco"
