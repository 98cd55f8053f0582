# The R half of mmaavi.io (python/mmaavi/io/_r.py sources this file into its own environment
# through rpy2). Plain R values in and out: sparse counts as dgCMatrix, names as character,
# cell tables column by column. It reads and writes objects; which cells and features count
# as measured is decided on the Python side (mmaavi.io._rules, the R package's rules).

# Run fun(...); an R error comes back as list(error = its message) instead of being raised,
# so Python can say what it was doing. Packages attached on the way say nothing.
safely <- function(fun, ...) {
  tryCatch(
    list(value = suppressPackageStartupMessages(fun(...))),
    error = function(e) list(error = conditionMessage(e))
  )
}

read_object <- function(path) readRDS(path)

# Which host class the object is: "seurat", "sce" or "other", after loading the namespace that
# defines it (readRDS does not), and whether that namespace is there at all.
object_kind <- function(object) {
  cls <- class(object)
  package <- attr(cls, "package")
  if (!is.null(package) && !requireNamespace(package, quietly = TRUE)) {
    return(list(kind = "missing-package", class = cls[1], package = package))
  }
  kind <- if (inherits(object, "Seurat")) {
    "seurat"
  } else if (methods::is(object, "SingleCellExperiment")) {
    "sce"
  } else {
    "other"
  }
  list(kind = kind, class = cls[1], package = if (is.null(package)) "" else package)
}

# Experiments of an object with whether each holds raw counts: Seurat assays, or the main
# experiment (named by mainExpName, "main" without one) and the altExps of an SCE.
experiments <- function(object, kind, assay_type) {
  if (kind == "seurat") {
    names <- SeuratObject::Assays(object)
    counts <- vapply(names, function(a) length(seurat_counts(object, a)) > 0, logical(1))
    return(list(names = names, counts = unname(counts), main = ""))
  }
  main <- SingleCellExperiment::mainExpName(object)
  if (is.null(main)) main <- "main"
  alt <- SingleCellExperiment::altExpNames(object)
  has <- function(se) assay_type %in% SummarizedExperiment::assayNames(se)
  counts <- c(has(object), vapply(alt, function(e) has(SingleCellExperiment::altExp(object, e)), logical(1)))
  list(names = c(main, alt), counts = unname(counts), main = main)
}

# Raw counts of an assay (SeuratObject 4 slot or SeuratObject 5 layer), features x cells.
seurat_counts <- function(object, assay) {
  if (utils::packageVersion("SeuratObject") >= "5.0.0") {
    layer_data <- getExportedValue("SeuratObject", "LayerData")
    return(layer_data(object[[assay]], layer = "counts"))
  }
  SeuratObject::GetAssayData(object[[assay]], slot = "counts")
}

# Counts of one experiment as list(x = dgCMatrix, features, cells); a dense or other sparse
# matrix is made a dgCMatrix (never the reverse).
counts_of <- function(object, kind, name, main, assay_type) {
  if (kind == "seurat") {
    x <- seurat_counts(object, name)
  } else {
    se <- if (identical(name, main)) object else SingleCellExperiment::altExp(object, name)
    x <- SummarizedExperiment::assay(se, assay_type, withDimnames = FALSE)
    dimnames(x) <- list(rownames(se), colnames(object))
  }
  if (!inherits(x, "dgCMatrix")) {
    if (!((is.matrix(x) && is.numeric(x)) || methods::is(x, "Matrix") || methods::is(x, "DelayedMatrix"))) {
      stop("expected a numeric matrix or a Matrix of counts (features x cells); found a ", class(x)[1], ".")
    }
    x <- methods::as(x, "CsparseMatrix")
    x <- methods::as(methods::as(x, "generalMatrix"), "dMatrix")
  }
  if (is.null(rownames(x))) rownames(x) <- paste0("feature", seq_len(nrow(x)))
  list(x = x, features = rownames(x), cells = colnames(x))
}

# The cell table (meta.data / colData) column by column, in forms Python reads without loss:
# factors as 0-based codes (-1 = NA) and their own levels (the class order RunMMAAVI() gives a
# factor label column); character columns likewise, as factor() makes them (levels in R's sort
# order, which is how RunMMAAVI() orders batches and character labels);
# logicals, integers and doubles with an NA mask; anything else as character.
cell_table <- function(object, kind) {
  table <- if (kind == "seurat") object[[]] else SummarizedExperiment::colData(object)
  columns <- lapply(stats::setNames(colnames(table), colnames(table)), function(name) {
    column(table[[name]], ncol(object))
  })
  list(cells = colnames(object), columns = columns)
}

column <- function(v, n) {
  if (is.factor(v)) {
    codes <- as.integer(v) - 1L
    codes[is.na(codes)] <- -1L
    return(list(type = "factor", codes = codes, levels = levels(v), ordered = is.ordered(v)))
  }
  if (is.logical(v)) {
    return(list(type = "logical", values = !is.na(v) & v, na = is.na(v)))
  }
  if (is.integer(v) || is.double(v)) {
    return(list(type = if (is.integer(v)) "integer" else "double", values = as.double(v), na = is.na(v)))
  }
  values <- if (is.character(v)) v else tryCatch(as.character(v), error = function(e) NULL)
  if (length(values) != n) values <- rep(NA_character_, n)
  column(factor(values), n)
}

# Sorted distinct values as R sorts them (the order R's factor() gives RunMMAAVI's batches).
sorted_levels <- function(values) levels(factor(values))

# ---------------------------------------------------------------------------- writing

# Python's columns (RSession.r_column in _r.py): NA where `na`; factors from 1-based codes
# (0 = NA).
with_na <- function(values, na) {
  values[na] <- NA
  values
}

make_factor <- function(codes, levels, ordered) {
  codes[codes < 1L] <- NA_integer_
  factor(levels[codes], levels = levels, ordered = ordered)
}

# A cell table from converted columns.
data_frame <- function(columns, cells) {
  out <- data.frame(row.names = cells)
  for (name in names(columns)) out[[name]] <- columns[[name]]
  out
}

# Counts matrices (features x cells) named by `features` (one vector each) and `cells`.
named <- function(counts, features, cells) {
  Map(function(x, f) {
    dimnames(x) <- list(f, cells)
    x
  }, counts, features)
}

# A new Seurat object: one assay per modality (counts over every cell), the cell table.
new_seurat <- function(counts, features, cells, assays, table) {
  counts <- named(counts, features, cells)
  object <- SeuratObject::CreateSeuratObject(counts = counts[[1]], assay = assays[[1]], meta.data = table)
  for (i in seq_along(counts)[-1]) {
    object[[assays[[i]]]] <- SeuratObject::CreateAssayObject(counts = counts[[i]])
  }
  object
}

# A new SingleCellExperiment: the first modality in the main experiment, the others altExps.
new_sce <- function(counts, features, cells, names, table) {
  counts <- named(counts, features, cells)
  object <- SingleCellExperiment::SingleCellExperiment(
    assays = list(counts = counts[[1]]), colData = S4Vectors::DataFrame(table, check.names = FALSE)
  )
  SingleCellExperiment::mainExpName(object) <- names[[1]]
  for (i in seq_along(counts)[-1]) {
    SingleCellExperiment::altExp(object, names[[i]]) <-
      SingleCellExperiment::SingleCellExperiment(assays = list(counts = counts[[i]]))
  }
  object
}

# The results as RunMMAAVI() stores them: a DimReduc (Seurat) or reducedDim (SCE), per-cell
# columns in meta.data / colData. `embedding` and `columns` are over `cells`, which must be
# the object's cells (any order): rows are put in the object's order.
add_results <- function(object, kind, embedding, cells, columns, name, key, misc) {
  order <- match(colnames(object), cells)
  embedding <- embedding[order, , drop = FALSE]
  colnames(embedding) <- paste0(key, seq_len(ncol(embedding)))
  rownames(embedding) <- colnames(object)
  if (kind == "seurat") {
    object[[name]] <- SeuratObject::CreateDimReducObject(
      embeddings = embedding, key = key, assay = SeuratObject::DefaultAssay(object),
      global = TRUE, misc = misc
    )
    for (col in names(columns)) object[[col]] <- columns[[col]][order]
    return(object)
  }
  SingleCellExperiment::reducedDim(object, name) <- embedding
  for (col in names(columns)) SummarizedExperiment::colData(object)[[col]] <- columns[[col]][order]
  meta <- S4Vectors::metadata(object)
  meta$mmaavi[[name]] <- misc
  S4Vectors::metadata(object) <- meta
  object
}

write_object <- function(object, path) {
  saveRDS(object, path)
  invisible(path)
}
