"""Shared recipe bases (the papers' settings) that the recipes in this folder import and adjust."""
