"""Studies: saliency metrics and the explanation-method comparison study."""
