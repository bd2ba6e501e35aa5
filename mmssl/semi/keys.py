"""Batch keys of semi-supervised training (labelled part and unlabelled part of each item)."""

from mmssl.data.keys import batch_key

X_L = batch_key("x_l", "[B, ...] labelled inputs (weakly augmented)")
Y_L = batch_key("y_l", "[B] their labels")
U_RAW = batch_key("u", "[B, mu, ...] unlabelled inputs before the batched augmentation")
U_WEAK = batch_key("u_weak", "[B, mu, ...] weakly augmented unlabelled inputs")
U_STRONG = batch_key("u_strong", "[B, mu, ...] strongly augmented unlabelled inputs")
U_INDEX = batch_key("u_index", "[B, mu] positions of the unlabelled inputs in the pool")

#: recipe names of the unlabelled views (``unlabelled_view`` / ``student_view``) -> their batch keys
UNLABELLED_VIEWS = {"weak": U_WEAK, "strong": U_STRONG}
