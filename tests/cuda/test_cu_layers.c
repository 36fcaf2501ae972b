/* test_cu_layers.c: placeholder, being written */
int main(void) { return 77; }
