/* test_cu_host.c: placeholder, being written */
int main(void) { return 0; }
