# Results of a trained model, read back from its directory: Bayes factors, imputation, loading.

# The model directory, the cells (in the object's order) and the cell table of `object`.
.model_source <- function(object, reduction) {
  if (inherits(object, "MMAAVIModel")) {
    return(list(dir = object$path, cells = object$cells, table = object$obs))
  }
  if (inherits(object, "Seurat")) {
    reduction <- reduction %||% "mmaavi"
    .check_string(reduction, "reduction")
    if (!reduction %in% SeuratObject::Reductions(object)) {
      .abort("the object has no reduction '", reduction, "' (it has ", .show(SeuratObject::Reductions(object)), "); run RunMMAAVI() first or name its reduction.name.")
    }
    dir <- SeuratObject::Misc(object[[reduction]])$model.dir
    table <- object[[]]
  } else if (methods::is(object, "SingleCellExperiment")) {
    reduction <- reduction %||% "MMAAVI"
    .check_string(reduction, "reduction")
    dir <- S4Vectors::metadata(object)$mmaavi[[reduction]]$model.dir
    if (is.null(dir)) {
      .abort("the object has no mmaavi model '", reduction, "' in metadata(object)$mmaavi (it has ", .show(names(S4Vectors::metadata(object)$mmaavi)), "); run RunMMAAVI() first or give its name.")
    }
    table <- as.data.frame(SummarizedExperiment::colData(object))
  } else {
    .abort("expected a Seurat or SingleCellExperiment object processed by RunMMAAVI(), or a model from LoadMMAAVI(); found ", .describe(object), ".")
  }
  if (is.null(dir)) {
    .abort("reduction '", reduction, "' was not made by RunMMAAVI() (no model.dir in its misc).")
  }
  list(dir = dir, cells = colnames(object), table = table)
}

.check_model_exists <- function(dir) {
  if (!dir.exists(dir)) {
    .abort("the model directory '", dir, "' no longer exists (the default lives in the tempdir() of the R session that trained it). Rerun RunMMAAVI() with model.dir = <a lasting directory> to keep models across sessions.")
  }
  dir
}

#' Differential features between groups of cells, with Bayes factors
#'
#' Compares two groups of cells (or one group and all other cells) in every modality of a
#' model trained by [RunMMAAVI()]. Each modality is decoded for every drawn cell, also where it
#' was not measured, at a fixed library size and averaged over the batches that measured it, so
#' that neither missing modalities, library size nor batch bias the comparison (MODEL.md section
#' 10 of the Python package; the decision rule follows scvi-tools' `differential_expression`).
#'
#' @param object A Seurat or SingleCellExperiment object returned by [RunMMAAVI()], or a model
#'   from [LoadMMAAVI()].
#' @param group.by Column of the cell table (`meta.data`, `colData`; for a loaded model:
#'   `"batch"`, or `"predicted"` for a model trained with labels) with the groups, or a vector with one group per
#'   cell of `object`. Cells with `NA` belong to no group.
#' @param ident.1 The group to test.
#' @param ident.2 The reference group; `NULL` compares `ident.1` with all other cells that have
#'   a group ("rest").
#' @param modality Modalities to test (e.g. `"rna"`); `NULL`: all.
#' @param reduction The reduction (Seurat, default `"mmaavi"`) or `reducedDim` name (SCE,
#'   default `"MMAAVI"`) that `RunMMAAVI()` created.
#' @param threads torch CPU threads.
#' @param ... Further arguments of the Python `differential()` under their Python names:
#'   `mode` (`"change"` or `"vanilla"`), `delta` (0.25), `fdr_target` (0.05), `n_samples`
#'   (5000 draws per group), `batch_correction`, `pseudocount`, `seed`, `batch_size`.
#' @return A `data.frame`, one row per (modality, feature), sorted by `bayes_factor` within the
#'   comparison, with columns `feature`, `modality`, `proba_de` (posterior probability of a
#'   change), `proba_not_de`, `bayes_factor` (natural log; above 3 is strong evidence),
#'   `scale1`, `scale2` (mean normalised expression per group), `lfc_mean`, `lfc_median`,
#'   `lfc_std`, `lfc_min`, `lfc_max` (log2 fold change group 1 over group 2, with a pseudocount
#'   1000 times smaller than the one deciding `proba_de`, as in scvi-tools),
#'   `raw_mean1`, `raw_mean2`, `non_zeros_proportion1`, `non_zeros_proportion2` (over the
#'   group's cells that measured the feature), `is_de_fdr_<fdr_target>` (called at that
#'   posterior expected FDR), `comparison`, `group1`, `group2`.
#' @examples
#' \dontrun{
#' bf <- MMAAVIBayesFactors(seu, group.by = "cell_type", ident.1 = "B", modality = "rna")
#' head(bf[bf$is_de_fdr_0.05, c("feature", "bayes_factor", "lfc_mean")])
#' }
#' @export
MMAAVIBayesFactors <- function(object, group.by, ident.1, ident.2 = NULL, modality = NULL,
                               reduction = NULL, threads = 1L, ...) {
  source <- .model_source(object, reduction)
  groups <- .groups(group.by, source)
  present <- sort(unique(groups[!is.na(groups)]))
  .check_ident(ident.1, "ident.1", present)
  if (!is.null(ident.2)) .check_ident(ident.2, "ident.2", present)
  if (!is.null(modality) && (!is.character(modality) || !length(modality) || anyNA(modality))) {
    .abort("modality must be NULL or a character vector of modality names; found ", .describe(modality), ".")
  }
  .check_count(threads, "threads")
  keep <- !is.na(groups)
  table <- .py_call(
    "bayes_factors", .check_model_exists(source$dir),
    as.list(source$cells[keep]), as.list(groups[keep]),
    group1 = as.character(ident.1),
    group2 = if (is.null(ident.2)) NULL else as.character(ident.2),
    modality = if (is.null(modality)) NULL else as.list(modality),
    threads = as.integer(threads),
    differential_args = list(...)
  )
  as.data.frame(lapply(table, as.vector), stringsAsFactors = FALSE, check.names = FALSE)
}

.check_ident <- function(value, arg, present) {
  if (!is.atomic(value) || length(value) != 1L || is.na(value) || !as.character(value) %in% present) {
    .abort(arg, " must be one group of group.by; found ", if (is.atomic(value) && length(value) == 1L) paste0("'", value, "'") else .describe(value), ". The groups are ", .show(present, 20L), ".")
  }
}

# Group of each cell of `source`, as character with NA.
.groups <- function(group.by, source) {
  if (is.character(group.by) && length(group.by) == 1L && length(source$cells) != 1L) {
    values <- .cell_column(source$table, group.by, "group.by", "the cell table")
  } else if (length(group.by) == length(source$cells) && is.atomic(group.by)) {
    values <- group.by
  } else {
    .abort("group.by must be a column name of the cell table or a vector with one group per cell (", length(source$cells), "); found ", .describe(group.by), ".")
  }
  out <- as.character(values)
  out[is.na(values)] <- NA_character_
  if (all(is.na(out))) .abort("group.by has no cell with a group (all NA).")
  out
}

#' Impute a modality for every cell
#'
#' Decodes `modality` for every cell of a model trained by [RunMMAAVI()], including cells that
#' never measured it (e.g. protein for Multiome cells), as normalised expression per
#' `library.size` (probabilities for Bernoulli, means for Normal likelihoods).
#'
#' @inheritParams MMAAVIBayesFactors
#' @param modality The modality to impute, e.g. `"adt"`.
#' @param batch Batch whose decoder is used; `NULL` averages over the batches that measured
#'   `modality`.
#' @param library.size Library size the counts are scaled to.
#' @param new.assay Seurat only: the name of a new assay to store the imputed values in (its
#'   `data`); `NULL` returns the matrix.
#' @return A dense features x cells matrix (columns in the object's cell order), or, with
#'   `new.assay`, the Seurat object with that assay added.
#' @examples
#' \dontrun{
#' adt <- MMAAVIImpute(seu, "adt")
#' seu <- MMAAVIImpute(seu, "adt", new.assay = "ADT.imputed")
#' }
#' @export
MMAAVIImpute <- function(object, modality, batch = NULL, library.size = 1e4, new.assay = NULL,
                         reduction = NULL, threads = 1L) {
  source <- .model_source(object, reduction)
  .check_string(modality, "modality")
  .check_string(batch, "batch", null.ok = TRUE)
  if (!is.numeric(library.size) || length(library.size) != 1L || is.na(library.size) || library.size <= 0) {
    .abort("library.size must be a single positive number; found ", .describe(library.size), ".")
  }
  .check_string(new.assay, "new.assay", null.ok = TRUE)
  if (!is.null(new.assay) && !inherits(object, "Seurat")) {
    .abort("new.assay is for Seurat objects; for ", class(object)[1], " use the returned matrix.")
  }
  .check_count(threads, "threads")
  res <- .py_call("impute", .check_model_exists(source$dir), modality,
    batch = batch, library_size = as.numeric(library.size), threads = as.integer(threads)
  )
  idx <- match(source$cells, unlist(res$cells))
  if (anyNA(idx)) {
    .abort(sum(is.na(idx)), " cells of the object are not in the model, e.g. ", .show(source$cells[is.na(idx)], 3L), ".")
  }
  values <- as.matrix(res$values)[, idx, drop = FALSE]
  dimnames(values) <- list(unlist(res$features), source$cells)
  if (is.null(new.assay)) {
    return(values)
  }
  if (new.assay %in% SeuratObject::Assays(object)) {
    .abort("new.assay '", new.assay, "' already exists; choose another name.")
  }
  object[[new.assay]] <- SeuratObject::CreateAssayObject(data = values)
  object
}

#' Load a model saved by RunMMAAVI()
#'
#' Reads a model directory written by [RunMMAAVI()] (its `model.dir`), e.g. in a later R
#' session, and returns a plain R description with the per-cell results. The object holds
#' the path, not a Python object; pass it to [MMAAVIBayesFactors()] or [MMAAVIImpute()].
#'
#' @param path The model directory (`Misc(seu[["mmaavi"]])$model.dir`,
#'   `metadata(sce)$mmaavi$MMAAVI$model.dir`).
#' @param threads torch CPU threads.
#' @return An `MMAAVIModel`: a list with `path`, `cells`, `modalities`, `features` (per
#'   modality), `obs` (batch and, when trained with labels, predicted label per cell), `params` (model
#'   hyperparameters), `train` (training summary), `version` (of mmaavi that saved it),
#'   `embedding` (cells x latent dimensions), `attention` (cells x modalities) and, for
#'   models trained with labels, `predicted` (labels).
#' @examples
#' \dontrun{
#' model <- LoadMMAAVI(SeuratObject::Misc(seu[["mmaavi"]])$model.dir)
#' MMAAVIBayesFactors(model, group.by = "predicted", ident.1 = "B")
#' }
#' @export
LoadMMAAVI <- function(path, threads = 1L) {
  .check_string(path, "path")
  .check_model_exists(path)
  .check_count(threads, "threads")
  path <- normalizePath(path)
  info <- .py_call("describe", path)
  res <- .py_call("latent", path, threads = as.integer(threads))
  cells <- unlist(info$cells)
  fit <- .align_outputs(res, cells, "model")
  obs <- data.frame(batch = unlist(info$batch), row.names = cells, stringsAsFactors = FALSE)
  model <- list(
    path = path,
    cells = cells,
    modalities = unlist(info$modalities),
    features = lapply(info$features, unlist),
    obs = obs,
    params = info$init_params,
    train = info$train_info,
    version = info$mmaavi_version,
    embedding = fit$latent,
    attention = fit$attention,
    predicted = fit$labels
  )
  if (!is.null(fit$labels)) model$obs$predicted <- fit$labels
  structure(model, class = "MMAAVIModel")
}

#' @export
print.MMAAVIModel <- function(x, ...) {
  cat("mmaavi model in ", x$path, "\n", sep = "")
  cat(length(x$cells), " cells, ", length(unique(x$obs$batch)), " batches; modalities: ",
    paste0(x$modalities, " (", lengths(x$features[x$modalities]), " features)", collapse = ", "),
    "\n",
    sep = ""
  )
  cat("latent dimensions: ", ncol(x$embedding), "; trained for ", x$train$n_epochs,
    " epochs (seed ", x$train$seed, "); saved by mmaavi ", x$version, "\n",
    sep = ""
  )
  invisible(x)
}
