// adamw.cu: placeholder, being written
