"""Files clients upload and own (documents, datasets): one store, parameterised by kind."""
