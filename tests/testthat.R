library(testthat)
library(mmaavi)

test_check("mmaavi")
