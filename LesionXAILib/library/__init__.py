"""Case-based explanation: embeddings of lesions from the segmenter's features, a library of them, nearest neighbours."""
