"""SAE token labels (paper §5.1): SAEs and latents (``sae``), the token rule and retokenising (``token_rule``)."""
