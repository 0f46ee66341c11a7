"""Recipes: the YAML description of a study (schema, loading, checks)."""

from embedforensics.recipe.loader import LoadedRecipe, dump_recipe, load_recipe
from embedforensics.recipe.schema import Recipe

__all__ = ["LoadedRecipe", "Recipe", "dump_recipe", "load_recipe"]
