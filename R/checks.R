# Argument checks shared by the exported functions. Each error says what was expected, what was
# found and how to fix it; none needs Python.

.abort <- function(...) stop(paste0(...), call. = FALSE)

.show <- function(x, n = 5L) {
  x <- as.character(x)
  shown <- paste0("'", utils::head(x, n), "'", collapse = ", ")
  if (length(x) > n) shown <- paste0(shown, ", ... (", length(x), " in all)")
  if (!length(x)) shown <- "none"
  shown
}

.describe <- function(x) {
  if (is.null(x)) {
    return("NULL")
  }
  paste0("a ", class(x)[1], " of length ", length(x))
}

.check_string <- function(x, arg, null.ok = FALSE) {
  if (is.null(x) && null.ok) {
    return(invisible(NULL))
  }
  if (!is.character(x) || length(x) != 1L || is.na(x) || !nzchar(x)) {
    .abort(arg, " must be a single non-empty character string", if (null.ok) " or NULL", "; found ", .describe(x), ".")
  }
  invisible(x)
}

.check_count <- function(x, arg, null.ok = FALSE, min = 1) {
  if (is.null(x) && null.ok) {
    return(invisible(NULL))
  }
  if (!is.numeric(x) || length(x) != 1L || is.na(x) || x != round(x) || x < min) {
    .abort(arg, " must be a single whole number >= ", min, if (null.ok) " or NULL", "; found ", .describe(x), if (is.numeric(x) && length(x) == 1L) paste0(" (", x, ")"), ".")
  }
  invisible(as.integer(x))
}

.check_choice <- function(x, choices, arg) {
  if (identical(x, choices)) {
    return(choices[1])
  }
  if (!is.character(x) || length(x) != 1L || !x %in% choices) {
    .abort(arg, " must be one of ", .show(choices), "; found ", if (is.character(x) && length(x) == 1L) paste0("'", x, "'") else .describe(x), ".")
  }
  x
}

.check_flag <- function(x, arg) {
  if (!is.logical(x) || length(x) != 1L || is.na(x)) {
    .abort(arg, " must be TRUE or FALSE; found ", .describe(x), ".")
  }
  invisible(x)
}

# A column of a cell table (meta.data / colData): its values, or an error listing the columns.
.cell_column <- function(table, column, arg, what) {
  .check_string(column, arg)
  if (!column %in% colnames(table)) {
    .abort(arg, " = '", column, "' is not a column of ", what, "; its columns are ", .show(colnames(table), 20L), ". Add the column or name one of these.")
  }
  table[[column]]
}

.check_batch <- function(table, batch, what) {
  if (is.null(batch)) {
    return(rep("1", nrow(table)))
  }
  values <- .cell_column(table, batch, "batch", what)
  if (anyNA(values)) {
    .abort("batch column '", batch, "' has ", sum(is.na(values)), " missing values; every cell needs a batch. Fill them in or subset the object to cells with a batch.")
  }
  as.character(values)
}

.check_labels <- function(table, labels, what) {
  if (is.null(labels)) {
    return(NULL)
  }
  values <- .cell_column(table, labels, "labels", what)
  if (all(is.na(values))) {
    .abort("labels column '", labels, "' has no labelled cell (all NA); give at least one label, or labels = NULL for unsupervised training.")
  }
  # The classes' order (the model's class indices, the levels of the predicted labels) follows
  # one rule on both paths, RunMMAAVI() and mmaavi.io.read_rds() + MMAAVI in Python: a factor
  # keeps its own level order (unused levels dropped), any other column is ordered as factor()
  # orders its values (character in R's sort order, numbers numerically).
  out <- if (is.factor(values)) values else factor(values)
  droplevels(out)
}

.check_model_dir <- function(model.dir) {
  if (is.null(model.dir)) {
    return(tempfile("mmaavi-model-"))
  }
  .check_string(model.dir, "model.dir")
  if (dir.exists(model.dir) && length(list.files(model.dir, all.files = TRUE, no.. = TRUE))) {
    .abort("model.dir '", model.dir, "' exists and is not empty; give a new or empty directory (the model is saved there).")
  }
  model.dir
}

# Named modality -> container name (assay or altExp) mapping, checked against what exists.
.check_mapping <- function(mapping, available, arg, what) {
  if (!is.character(mapping) || !length(mapping) || is.null(names(mapping)) ||
    any(!nzchar(names(mapping))) || anyNA(mapping)) {
    .abort(arg, " must be a named character vector, modality = ", what, " (e.g. c(rna = 'RNA', adt = 'ADT')); found ", .describe(mapping), if (is.character(mapping) && is.null(names(mapping))) " without names", ".")
  }
  if (anyDuplicated(names(mapping))) {
    .abort(arg, ": modality names must be unique; found ", .show(names(mapping)[duplicated(names(mapping))]), " twice.")
  }
  if (any(grepl("[/:]", names(mapping)))) {
    .abort(arg, ": modality names cannot contain '/' or ':'; found ", .show(names(mapping)), ".")
  }
  unknown <- setdiff(mapping, available)
  if (length(unknown)) {
    .abort(arg, ": unknown ", what, " ", .show(unknown), "; the object has ", .show(available, 20L), ".")
  }
  mapping
}

# A counts matrix as dgCMatrix (sparse stays sparse; a dense one is made sparse, never the reverse).
.as_dgc <- function(x, where) {
  if (inherits(x, "dgCMatrix")) {
    return(x)
  }
  if (!((is.matrix(x) && is.numeric(x)) || methods::is(x, "Matrix"))) {
    .abort(where, ": expected a numeric matrix or a Matrix of counts (features x cells); found ", .describe(x), ". Store raw counts there.")
  }
  x <- methods::as(x, "CsparseMatrix")
  x <- methods::as(x, "generalMatrix")
  methods::as(x, "dMatrix")
}
