// pointwise.cu: placeholder, being written
