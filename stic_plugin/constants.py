"""Names shared by the plugin's modules; importing this costs nothing (it is read at interpreter start)."""

STAGE = "stic_dpo"
STAGE_DISPLAY_NAME = "STIC DPO"  # as listed in the LLaMA-Factory web UI's stage dropdown
# Describe-and-respond's description prompt, as in the authors' released evaluation (stic-cli dar, stic-cli eval)
DAR_DESCRIPTION_PROMPT = "Detail the composition and subjects within the frame."
# The template of a LLaVA-1.6-Mistral copy that trains on one padded view (stic-cli single-view): Mistral's chat
# format, as llava_next_mistral, with LLaVA's one-view image plugin (patches.py registers it)
SINGLE_VIEW_TEMPLATE = "llava_mistral"
SINGLE_VIEW_CHAT_FORMAT = "llava_next_mistral"
