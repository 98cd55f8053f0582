#' Integrate a mosaic of single-cell modalities with mmAAVI
#'
#' Trains an mmAAVI model (Rong et al. 2024, \doi{10.1093/bib/bbae540}) on the raw counts of
#' several modalities (RNA, ADT protein, ATAC peaks, ...) measured in different subsets of
#' cells, and stores one batch-corrected embedding for every cell. The model runs in Python
#' (package mmaavi, through reticulate); see [mmaavi_python_info()] for which Python is used.
#'
#' @section Mosaic objects:
#' A mosaic holds cells that measured only some modalities (e.g. CITE-seq cells with RNA and
#' ADT, Multiome cells with RNA and ATAC). Which cells measured a modality is decided, in this
#' order, by
#' 1. the `observed` argument: per modality, a logical column of the cell table or the names
#'    of the cells that measured it;
#' 2. an assay that covers only a subset of the cells (SeuratObject 5);
#' 3. otherwise a cell whose column is all zero counts as not measured (Seurat 4 makes every
#'    assay span every cell, so `merge()` fills unmeasured cells with zeros); a message says
#'    how many cells of each modality were treated so.
#'
#' Likewise, the genes one batch's panel lacks are zeros there after `merge()`: by default
#' (`batch.features = "nonzero"`) a feature without a count in any cell of a batch is treated
#' as not measured in that batch (a message says how many). Each batch is given to the model
#' as its own block of cells.
#'
#' To build such a Seurat object, create one object per assay type and `merge()` them, then
#' add the missing assays as all-zero matrices over all cells, or create the object from the
#' union of cells with zero columns where a modality was not measured (see the vignette
#' `vignette("seurat", package = "mmaavi")`).
#'
#' Cells are given to the model in one canonical order (by name), so the result depends on the
#' cells and the seed, not on the column order of `object`. The model and the data it was
#' trained on are saved in `model.dir`; the object keeps the path (never a Python object), so
#' [MMAAVIBayesFactors()], [MMAAVIImpute()] and [LoadMMAAVI()] work in later R sessions as
#' long as the directory exists (the default, under [tempdir()], lasts one session).
#'
#' @param object A `Seurat` or `SingleCellExperiment` object with raw counts.
#' @param ... For the methods: arguments of the Python model, under their Python names, passed
#'   to `MMAAVI()` or `train()`: `max_epochs`, `n_latent`, `lr`, `batch_size`,
#'   `early_stopping_patience`, `restore_best` (`TRUE`: end with the best epoch's weights by
#'   validation loss, not the last), `likelihoods`, `transform`, `encoder_hidden`, ... (see the
#'   Python documentation). Unknown names are an error.
#' @return The object with the embedding and per-cell results added (see the methods).
#' @seealso [MMAAVIBayesFactors()], [MMAAVIImpute()], [LoadMMAAVI()]
#' @export
RunMMAAVI <- function(object, ...) {
  UseMethod("RunMMAAVI")
}

#' @export
RunMMAAVI.default <- function(object, ...) {
  .abort("RunMMAAVI() takes a Seurat or SingleCellExperiment object; found ", .describe(object), ".")
}

#' @rdname RunMMAAVI
#' @param assays Named character vector, modality = assay name, e.g.
#'   `c(rna = "RNA", adt = "ADT", atac = "ATAC")`. Default: every assay with counts, named by
#'   its lower-cased assay name.
#' @param batch Column of the cell table (`meta.data`, `colData`) with each cell's batch;
#'   `NULL`: one batch.
#' @param labels Optional column with cell labels for semi-supervised training and label
#'   transfer; `NA` = unlabelled. Predicted labels and their probability are added to the
#'   cell table. The classes are ordered as the levels of a factor column (unused levels
#'   dropped), otherwise as [factor()] orders the values (character columns in R's sort
#'   order, numbers numerically); the same rule as `mmaavi.io.read_rds()` in Python, so both
#'   give the model the same classes in the same order.
#' @param observed Optional named list, modality = the name of a logical column of the cell
#'   table, or the names of the cells that measured it, or a logical vector over the cells.
#' @param batch.features `"nonzero"` (default): in each batch, a feature without a single count
#'   in the cells of that batch counts as not measured there (`merge()` fills the genes a
#'   batch lacks with zeros, which would tell the model those genes are silent). `"all"`:
#'   every feature was measured in every cell that measured the modality.
#' @param n.components Number of mixture components (cell states) of the prior. Required
#'   without `labels`; with labels the default is the number of classes.
#' @param reduction.name,reduction.key Name and key of the `DimReduc` added.
#' @param model.dir Directory to save the model and its data in (must not exist or be empty).
#'   Default: a new directory under [tempdir()].
#' @param seed Seed of the model's initial weights, data split and sampling: the same data and
#'   seed give the same embedding (on CPU).
#' @param threads torch CPU threads while training. One is the default: the model's tensors
#'   are small, and extra threads gain little and lose much on busy machines.
#' @param verbose Print progress (one line per epoch) and messages.
#' @return Seurat: the object with a `DimReduc` `reduction.name` (rows = cells in the object's
#'   order, key `reduction.key`, `global = TRUE`, `misc` holding `model.dir`, the training
#'   summary, history and versions), meta.data columns `<reduction.name>_attention_<modality>`
#'   (the weight of each modality in each cell's embedding; 0 where not measured) and, with
#'   `labels`, `<reduction.name>_label` and `<reduction.name>_label_probability`; the command is
#'   logged (`LogSeuratCommand`).
#' @examples
#' \dontrun{
#' seu <- RunMMAAVI(seu,
#'   assays = c(rna = "RNA", adt = "ADT", atac = "ATAC"),
#'   batch = "batch", n.components = 10, max_epochs = 100
#' )
#' Seurat::DimPlot(seu, reduction = "mmaavi", group.by = "batch")
#' }
#' @export
RunMMAAVI.Seurat <- function(object, assays = NULL, batch = NULL, labels = NULL,
                             observed = NULL, batch.features = c("nonzero", "all"),
                             n.components = NULL, reduction.name = "mmaavi", reduction.key = "MMAAVI_",
                             model.dir = NULL, seed = 0L, threads = 1L, verbose = TRUE, ...) {
  available <- SeuratObject::Assays(object)
  if (is.null(assays)) {
    assays <- Filter(function(a) length(.seurat_counts(object, a)) > 0, available)
    if (!length(assays)) {
      .abort("no assay of the object has counts; found assays ", .show(available), ". Store raw counts in an assay (CreateAssayObject(counts = ...)).")
    }
    names(assays) <- tolower(assays)
  }
  .check_mapping(assays, available, "assays", "assay")
  table <- object[[]]
  batch_values <- .check_batch(table, batch, "meta.data")
  label_values <- .check_labels(table, labels, "meta.data")
  if (is.null(labels)) .check_count(n.components, "n.components (required without labels)")
  .check_count(n.components, "n.components", null.ok = TRUE)
  .check_string(reduction.name, "reduction.name")
  .check_string(reduction.key, "reduction.key")
  if (!grepl("^[A-Za-z][A-Za-z0-9]*_$", reduction.key)) {
    .abort("reduction.key must be letters and digits ending in '_' (e.g. 'MMAAVI_'); found '", reduction.key, "'.")
  }
  .check_count(seed, "seed", min = 0)
  .check_count(threads, "threads")
  .check_flag(verbose, "verbose")
  batch.features <- .check_choice(batch.features, c("nonzero", "all"), "batch.features")
  model.dir <- .check_model_dir(model.dir)

  cells <- colnames(object)
  counts <- lapply(assays, function(a) {
    x <- .seurat_counts(object, a)
    if (!length(x)) {
      .abort("assay '", a, "' has no counts; RunMMAAVI() needs raw counts in the counts slot/layer.")
    }
    .as_dgc(x, paste0("assay '", a, "' counts"))
  })
  blocks <- .mosaic_blocks(counts, cells, observed, table, "meta.data", verbose,
    batch_values, batch.features
  )
  fit <- .fit_mosaic(blocks, cells, batch_values, label_values, n.components, model.dir,
    seed, threads, verbose,
    args = list(...)
  )

  embeddings <- fit$latent
  colnames(embeddings) <- paste0(reduction.key, seq_len(ncol(embeddings)))
  object[[reduction.name]] <- SeuratObject::CreateDimReducObject(
    embeddings = embeddings,
    key = reduction.key,
    assay = unname(assays[[1]]),
    global = TRUE,
    misc = .misc(fit, assays, batch, labels, n.components, seed)
  )
  object <- SeuratObject::AddMetaData(object, .cell_columns(fit, reduction.name))
  # logged with the first assay as the one used (a global reduction has none of its own)
  command <- SeuratObject::LogSeuratCommand(object = object, return.command = TRUE)
  methods::slot(command, "assay.used") <- unname(assays[[1]])
  object[[methods::slot(command, "name")]] <- command
  object
}

# Raw counts of an assay (SeuratObject 4 slot or SeuratObject 5 layer), features x cells.
.seurat_counts <- function(object, assay) {
  if (utils::packageVersion("SeuratObject") >= "5.0.0") {
    layer_data <- getExportedValue("SeuratObject", "LayerData")
    return(layer_data(object[[assay]], layer = "counts"))
  }
  SeuratObject::GetAssayData(object[[assay]], slot = "counts")
}

#' @rdname RunMMAAVI
#' @param assay.type Assay of the main experiment and of the alternative experiments holding
#'   raw counts.
#' @param main.modality Modality of the main experiment (`NULL`: the main experiment is not
#'   used).
#' @param altexps Named character vector, modality = `altExp` name, e.g.
#'   `c(adt = "ADT", atac = "ATAC")`. Default: every alternative experiment with `assay.type`,
#'   named by its lower-cased name.
#' @param name Name of the `reducedDim` added (and of the `metadata(object)$mmaavi` entry).
#' @return SingleCellExperiment: the object with `reducedDim(object, name)` (cells x latent
#'   dimensions), `colData` columns `<name>_attention_<modality>` (and `<name>_label`,
#'   `<name>_label_probability` with `labels`), and `metadata(object)$mmaavi[[name]]` holding
#'   `model.dir`, the training summary and versions.
#' @export
RunMMAAVI.SingleCellExperiment <- function(object, assay.type = "counts", main.modality = "rna",
                                           altexps = NULL, batch = NULL, labels = NULL,
                                           observed = NULL,
                                           batch.features = c("nonzero", "all"),
                                           n.components = NULL, name = "MMAAVI", model.dir = NULL, seed = 0L,
                                           threads = 1L, verbose = TRUE, ...) {
  .check_string(assay.type, "assay.type")
  .check_string(main.modality, "main.modality", null.ok = TRUE)
  cells <- colnames(object)
  if (is.null(cells) || anyDuplicated(cells)) {
    .abort("the object needs unique column (cell) names; found ", if (is.null(cells)) "none" else paste(sum(duplicated(cells)), "duplicated"), ". Set colnames(object).")
  }
  available <- SingleCellExperiment::altExpNames(object)
  if (is.null(altexps)) {
    altexps <- Filter(function(e) assay.type %in% SummarizedExperiment::assayNames(SingleCellExperiment::altExp(object, e)), available)
    names(altexps) <- tolower(altexps)
  }
  if (length(altexps)) .check_mapping(altexps, available, "altexps", "altExp")
  if (!is.null(main.modality) && main.modality %in% names(altexps)) {
    .abort("main.modality '", main.modality, "' is also a name in altexps; give each modality once.")
  }
  table <- as.data.frame(SummarizedExperiment::colData(object))
  batch_values <- .check_batch(table, batch, "colData")
  label_values <- .check_labels(table, labels, "colData")
  if (is.null(labels)) .check_count(n.components, "n.components (required without labels)")
  .check_count(n.components, "n.components", null.ok = TRUE)
  .check_string(name, "name")
  .check_count(seed, "seed", min = 0)
  .check_count(threads, "threads")
  .check_flag(verbose, "verbose")
  batch.features <- .check_choice(batch.features, c("nonzero", "all"), "batch.features")
  model.dir <- .check_model_dir(model.dir)

  experiments <- c(
    if (!is.null(main.modality)) stats::setNames(list(object), main.modality),
    lapply(altexps, function(e) SingleCellExperiment::altExp(object, e))
  )
  if (!length(experiments)) {
    .abort("no modality to use: main.modality is NULL and the object has no altExp with assay '", assay.type, "' (altExps: ", .show(available), ").")
  }
  counts <- Map(function(se, modality) {
    if (!assay.type %in% SummarizedExperiment::assayNames(se)) {
      .abort("modality '", modality, "': no assay '", assay.type, "'; its assays are ", .show(SummarizedExperiment::assayNames(se)), ". Set assay.type.")
    }
    x <- .as_dgc(SummarizedExperiment::assay(se, assay.type), paste0("modality '", modality, "'"))
    colnames(x) <- cells
    x
  }, experiments, names(experiments))
  blocks <- .mosaic_blocks(counts, cells, observed, table, "colData", verbose,
    batch_values, batch.features
  )
  fit <- .fit_mosaic(blocks, cells, batch_values, label_values, n.components, model.dir,
    seed, threads, verbose,
    args = list(...)
  )

  SingleCellExperiment::reducedDim(object, name) <- fit$latent
  columns <- .cell_columns(fit, name)
  for (col in colnames(columns)) {
    SummarizedExperiment::colData(object)[[col]] <- columns[[col]]
  }
  modalities <- c(if (!is.null(main.modality)) stats::setNames(assay.type, main.modality), altexps)
  meta <- S4Vectors::metadata(object)
  meta$mmaavi[[name]] <- .misc(fit, modalities, batch, labels, n.components, seed)
  S4Vectors::metadata(object) <- meta
  object
}
