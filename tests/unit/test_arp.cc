// ARP service tests: being written.
#include <gtest/gtest.h>
