"""trivial_rewrite"""
