// classifier.cu: placeholder, being written
