// matmul.cu: placeholder, being written
