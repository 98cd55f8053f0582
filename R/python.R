# The Python boundary: the only file that talks to reticulate. It finds the Python that has
# mmaavi, imports mmaavi._rbridge on first use (never when the package loads), checks that the
# Python package has this R package's version, and turns Python exceptions into R errors that
# carry the Python message only. Everything else in the package is plain R.

.mmaavi <- new.env(parent = emptyenv())

# Candidate interpreters in the documented order, as list(python = path, source = why).
.python_choice <- function() {
  for (var in c("MMAAVI_PYTHON", "RETICULATE_PYTHON")) {
    value <- Sys.getenv(var)
    if (nzchar(value)) {
      return(list(python = path.expand(value), source = paste0("$", var)))
    }
  }
  dir <- normalizePath(getwd(), mustWork = FALSE)
  repeat {
    venv <- file.path(dir, ".venv", "bin", "python")
    if (file.exists(venv)) {
      return(list(python = venv, source = paste0("the project venv ", dirname(dirname(venv)))))
    }
    parent <- dirname(dir)
    if (identical(parent, dir)) break
    dir <- parent
  }
  list(python = NULL, source = "reticulate's default Python")
}

# Start Python (once per R session) and import the bridge; returns NULL, recording why, when
# that fails. Python cannot be swapped once started, so a failure is final for the session.
.load_bridge <- function() {
  if (!is.null(.mmaavi$bridge) || !is.null(.mmaavi$failure)) {
    return(.mmaavi$bridge)
  }
  if (reticulate::py_available(initialize = FALSE)) {
    choice <- list(
      python = reticulate::py_config()$python,
      source = "the Python already running in this R session"
    )
  } else {
    choice <- .python_choice()
    if (!is.null(choice$python)) {
      if (!file.exists(choice$python)) {
        .mmaavi$failure <- sprintf(
          "%s names %s, which does not exist. Point it at the python of a venv holding mmaavi, e.g. <repository>/.venv/bin/python (make venv creates it).",
          choice$source, choice$python
        )
        .mmaavi$choice <- choice
        return(NULL)
      }
      # reticulate reads RETICULATE_PYTHON when it starts Python; set it only for that moment
      old <- Sys.getenv("RETICULATE_PYTHON", unset = NA)
      Sys.setenv(RETICULATE_PYTHON = choice$python)
      on.exit(
        if (is.na(old)) Sys.unsetenv("RETICULATE_PYTHON") else Sys.setenv(RETICULATE_PYTHON = old),
        add = TRUE
      )
    } else {
      py_require <- get0("py_require", envir = asNamespace("reticulate"), inherits = FALSE)
      if (is.function(py_require)) py_require("mmaavi")
    }
  }
  .mmaavi$choice <- choice
  bridge <- tryCatch(reticulate::import("mmaavi._rbridge"), error = function(e) e)
  if (inherits(bridge, "error")) {
    .mmaavi$failure <- sprintf(
      "the Python found through %s (%s) cannot import mmaavi: %s. Set MMAAVI_PYTHON to the python of a venv that has it (make venv in the repository creates .venv) and restart R.",
      choice$source, choice$python %||% "not found", .python_message(bridge)
    )
    return(NULL)
  }
  versions <- .py_to_list(bridge$versions())
  expected <- as.character(utils::packageVersion("mmaavi"))
  if (!identical(versions$mmaavi, expected)) {
    .mmaavi$failure <- sprintf(
      "the R package mmaavi %s needs the Python package mmaavi %s, but %s has mmaavi %s. Install the matching versions from one source tree (R CMD INSTALL . and pip install -e . in the same repository), then restart R.",
      expected, expected, versions$executable, versions$mmaavi
    )
    return(NULL)
  }
  .mmaavi$versions <- versions
  .mmaavi$bridge <- bridge
  bridge
}

`%||%` <- function(x, y) if (is.null(x)) y else x

.py_to_list <- function(x) {
  if (inherits(x, "python.builtin.object")) reticulate::py_to_r(x) else x
}

# TRUE when the Python side is usable; with `reason = TRUE`, the reason it is not, or NULL.
.mmaavi_available <- function(reason = FALSE) {
  ok <- !is.null(.load_bridge())
  if (reason) {
    return(if (ok) NULL else .mmaavi$failure)
  }
  ok
}

# The bridge module, or an R error saying why Python cannot be used.
.bridge <- function() {
  bridge <- .load_bridge()
  if (is.null(bridge)) {
    stop("mmaavi needs its Python package: ", .mmaavi$failure,
      " See mmaavi_python_info().",
      call. = FALSE
    )
  }
  bridge
}

# Call bridge function `fun` with R arguments; Python errors become R errors with the Python
# message (exception type and text, no traceback).
.py_call <- function(fun, ...) {
  bridge <- .bridge()
  tryCatch(bridge[[fun]](...), error = function(e) {
    stop(.python_message(e), call. = FALSE)
  })
}

.python_message <- function(e) {
  message <- conditionMessage(e)
  last <- tryCatch(reticulate::py_last_error(), error = function(e) NULL)
  if (!is.null(last) && length(last$value) == 1L && nzchar(last$value) &&
    grepl(last$value, message, fixed = TRUE)) {
    value <- sub("^(['\"])(.*)\\1$", "\\2", last$value)
    return(paste0(last$type, ": ", value))
  }
  trimws(sub("\\n+Detailed traceback:.*$", "", message))
}

#' Which Python mmaavi uses, and whether it works
#'
#' Finds (and, if needed, starts) the Python interpreter the package uses and reports its
#' versions. Python is looked for, in this order, at `MMAAVI_PYTHON`, `RETICULATE_PYTHON`, a
#' `.venv/bin/python` in the working directory or one of its parents (the repository's venv
#' made by `make venv`), then reticulate's default. Python is started at the first call that
#' needs it (never when the package is loaded) and cannot be changed afterwards in the same R
#' session. The R and Python packages must have the same version.
#'
#' @return A list (printed): `available` (`TRUE`/`FALSE`), `reason` (why not, or `NULL`),
#'   `python` (path) and `source` (how it was found), `r_package` (this package's version)
#'   and `versions` (mmaavi, Python, torch, numpy, scipy, pandas, anndata, mudata versions
#'   when available).
#' @examples
#' info <- mmaavi_python_info()
#' info$available
#' @export
mmaavi_python_info <- function() {
  available <- .mmaavi_available()
  choice <- .mmaavi$choice %||% .python_choice()
  structure(
    list(
      available = available,
      reason = if (available) NULL else .mmaavi$failure,
      python = choice$python %||% NA_character_,
      source = choice$source,
      r_package = as.character(utils::packageVersion("mmaavi")),
      versions = .mmaavi$versions
    ),
    class = "mmaavi_python_info"
  )
}

#' @export
print.mmaavi_python_info <- function(x, ...) {
  cat("mmaavi (R)      ", x$r_package, "\n", sep = "")
  cat("Python          ", x$python, " (found through ", x$source, ")\n", sep = "")
  if (isTRUE(x$available)) {
    v <- x$versions
    for (name in setdiff(names(v), "executable")) {
      cat(formatC(name, width = -16), v[[name]], "\n", sep = "")
    }
  } else {
    cat("not available:  ", x$reason, "\n", sep = "")
  }
  invisible(x)
}
