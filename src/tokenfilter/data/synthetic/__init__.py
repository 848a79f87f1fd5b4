"""The built-in synthetic world (DESIGN §5): a corpus whose forget content is known exactly.

``world`` builds a knowledge base of entities and facts in three domains (forget = medicine,
retain-near = biology, retain-far = general) with pseudo-word names; ``documents`` writes
pretraining documents from it with character-exact forget spans; ``derived`` writes the held-out
sets (eval text, MCQs, free-response, instruction, chat and refusal data) and checks that each is
disjoint from the pretraining documents.
"""
