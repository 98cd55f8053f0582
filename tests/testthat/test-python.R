test_that("Python is looked for at MMAAVI_PYTHON, then RETICULATE_PYTHON, then a .venv", {
  old <- Sys.getenv(c("MMAAVI_PYTHON", "RETICULATE_PYTHON"), unset = NA)
  on.exit(for (v in names(old)) {
    if (is.na(old[[v]])) Sys.unsetenv(v) else do.call(Sys.setenv, as.list(old[v]))
  })
  Sys.setenv(MMAAVI_PYTHON = "/opt/a/python", RETICULATE_PYTHON = "/opt/b/python")
  expect_identical(.python_choice(), list(python = "/opt/a/python", source = "$MMAAVI_PYTHON"))
  Sys.unsetenv("MMAAVI_PYTHON")
  expect_identical(.python_choice()$source, "$RETICULATE_PYTHON")
  Sys.unsetenv("RETICULATE_PYTHON")
  project <- tempfile()
  dir.create(file.path(project, ".venv", "bin"), recursive = TRUE)
  dir.create(file.path(project, "sub", "dir"), recursive = TRUE)
  file.create(file.path(project, ".venv", "bin", "python"))
  wd <- setwd(file.path(project, "sub", "dir"))
  on.exit(setwd(wd), add = TRUE)
  expect_identical(
    .python_choice()$python,
    file.path(normalizePath(project), ".venv", "bin", "python")
  )
})

test_that("without a usable Python the package loads, says why, and Python-needing calls stop", {
  script <- tempfile(fileext = ".R")
  writeLines(c(
    "library(mmaavi)",
    "info <- mmaavi_python_info()",
    "cat('available:', info$available, '\\n')",
    "cat('reason:', info$reason, '\\n')",
    "m <- tryCatch(LoadMMAAVI(tempdir()), error = conditionMessage)",
    "cat('error:', m, '\\n')"
  ), script)
  env <- c(
    MMAAVI_PYTHON = "/nonexistent/bin/python",
    R_LIBS = paste(.libPaths(), collapse = .Platform$path.sep)
  )
  out <- system2(file.path(R.home("bin"), "Rscript"), c("--vanilla", script),
    env = paste0(names(env), "=", shQuote(env)), stdout = TRUE, stderr = TRUE
  )
  out <- paste(out, collapse = "\n")
  expect_match(out, "available: FALSE")
  expect_match(out, "reason: \\$MMAAVI_PYTHON names /nonexistent/bin/python, which does not exist")
  expect_match(out, "error: mmaavi needs its Python package: \\$MMAAVI_PYTHON names /nonexistent")
})

test_that("mmaavi_python_info reports the Python used and matching versions", {
  skip_without_python()
  info <- mmaavi_python_info()
  expect_true(info$available)
  expect_null(info$reason)
  expect_identical(info$versions$mmaavi, info$r_package)
  expect_true(file.exists(info$python))
  expect_output(print(info), "torch")
})

test_that("torch's matrix products reach torch's own BLAS in this R process, not R's", {
  skip_without_python()
  # R's BLAS is loaded with libR, before Python: without mmaavi's deep binding of torch its
  # sgemm_ calls bind to R's library and float32 results differ from Python's
  blas <- mmaavi_python_info()$versions$blas
  expect_match(blas, "libtorch_cpu\\.so \\(torch's own\\)")
  expect_output(print(mmaavi_python_info()), "blas +.*libtorch_cpu")
})

test_that("Python exceptions arrive as R errors with the Python message only", {
  skip_without_python()
  err <- tryCatch(.py_call("load", tempdir()), error = identity)
  expect_match(conditionMessage(err), "^FileNotFoundError: .* is not a model directory written by RunMMAAVI\\(\\)")
  expect_false(grepl("Traceback|File \"", conditionMessage(err)))
})
