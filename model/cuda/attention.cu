// attention.cu: placeholder, being written
