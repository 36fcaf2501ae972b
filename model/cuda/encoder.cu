// encoder.cu: placeholder, being written
