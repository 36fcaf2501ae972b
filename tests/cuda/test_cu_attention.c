/* test_cu_attention.c: placeholder, being written */
int main(void) { return 77; }
