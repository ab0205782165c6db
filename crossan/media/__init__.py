"""Media: encoding demo clips and sampling frames, audio and covers for the encoders."""
