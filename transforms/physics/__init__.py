"""Physics on padded rows: kinematic roles, constituent padding, preprocessing, images, variations."""
