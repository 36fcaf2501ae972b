/* test_cu_adamw.c: placeholder, being written */
int main(void) { return 77; }
