"""Real photographs: find faces, align them to a generator, restore them in the photo's coordinates, paste them back."""
